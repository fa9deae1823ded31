"""Every place the pipeline works around MONAI, in one table: what MONAI does, our answer, and when it can go.

The code stays with its concern (the checkpoint saver in :mod:`pipeline.checkpoints`, the validation Dice in
:mod:`pipeline.validation`, ...); this module only lists it, so that one page tells what a MONAI upgrade may let
us delete. "where" names an object of ``pipeline`` (``checkpoints.AtomicCheckpointSaver`` is
``pipeline.checkpoints.AtomicCheckpointSaver``) or a bundle config id; "MONAI" is the version the row was written
for (``pyproject.toml`` pins ``monai==1.6.1``). Before upgrading MONAI, read the last column of each row: where
the new version does what it says, use MONAI's own and delete our code and the row, else update the row's
version. ``tests/test_monai_workarounds.py`` holds the table to the installed MONAI and to the names in "where".

============  =====  =========================================  =================================  =====================
topic         MONAI  what MONAI does                            where (in pipeline)                goes when MONAI
============  =====  =========================================  =================================  =====================
loss          1.6.1  DiceCELoss(sigmoid=True) takes a softmax   train.yaml train#loss:             DiceCELoss computes a
                     cross-entropy across the channels          DiceLoss on sigmoid outputs        per-channel BCE with
                     whenever there are more than one: wrong    alone (a config comment)           sigmoid=True
                     for TC, WT, ET, which overlap
val Dice      1.6.1  the MeanDice handler cannot set            validation.region_dice             MeanDice takes
                     ignore_empty: a case with an empty         (DiceMetric(ignore_empty=False)    ignore_empty
                     reference region scores NaN and leaves     as an IgniteMetricHandler)
                     the mean (BraTS: 1 or 0)
val schedule  1.6.1  ValidationHandler validates on             validation.FinalValidationHandler  ValidationHandler
                     EPOCH_COMPLETED(every=interval) only: a                                       also validates after
                     run shorter than, or not a multiple of,                                       the last epoch
                     val_interval ends unvalidated (no
                     model.pt)
checkpoints   1.6.1  CheckpointSaver writes through ignite's    checkpoints.AtomicCheckpointSaver  CheckpointSaver
                     DiskSaver(atomic=False) (atomic would      checkpoints.atomic_torch_save      writes atomically,
                     make the files user-only): a run killed                                       with the umask's file
                     while saving leaves a truncated model.pt                                      mode
resume        1.6.1  CheckpointSaver/CheckpointLoader keep      checkpoints.TrainingCheckpoint     its checkpoints carry
                     state dicts but no random states (Python,  checkpoints.random_states          the generator states,
                     NumPy, torch, each random transform's                                         the random
                     RandomState): a resumed run draws other                                       transforms' included
                     patches
regions       1.6.1  ConvertToMultiChannelBasedOnBratsClassesd  transforms.LabelsToRegionsd        a transform takes a
                     hard-codes TC = label 1 | ET (1 is oedema  (the tables of labels)             label -> region table
                     in MSD's numbering) and only TC, WT, ET
imports       1.6.1  $import a.b in a bundle config binds the   __getattr__ (submodules load       $import a.b binds a,
                     name "a.b", not a: $a.b.f() then fails     on first use: configs              as Python's import
                                                                $import pipeline)                  does
orientation   1.6.1  every Orientationd built without labels    none: common.yaml orient           the deprecation
                     warns (FutureWarning) that the default     leaves labels unset                notice is dropped
                     became None (the meta-tensor's space)      (labels: null would silence
                                                                it and change nothing)
CPU autocast  1.6.1  the engines enter torch.autocast("cuda",   precision.cpu_autocast (network    the engines autocast
                     ...) only: no mixed precision on the CPU   of common.yaml and ensemble.yaml;  on their device's
                                                                fast.yaml cpu_amp)                 type
cache copy    1.6.1  CacheDataset deep-copies the cached item   fast.without_cache_copy            never: a safe
                     on every draw (copy_cache=True): ~100 MB                                      default, not a
                     per BraTS case                                                                defect; it goes when
                                                                                                   our cached_dataset
                                                                                                   takes copy_cache
metadata      1.6.1  MetaTensor tracking is switched per        fast.WithoutMetadata,              a Compose (or a
                     process (set_track_meta), not per          fast.without_metadata              transform) can switch
                     Compose; it costs ~1 ms of Python per                                         tracking off for
                     patch                                                                         itself
contrasts     1.6.1  LoadImaged stacks a case's files only if   check._check_grid (the same        never wholly (the
                     their affines pass numpy.allclose          test before training, with         check reports every
                     (_copy_compatible_dict), else it raises    the case, the file, the fix)       case at once); keep
                     naming neither the case nor the fix                                           its test equal to
                                                                                                   MONAI's
cache key     1.6.1  PersistentDataset's hash_transform falls   datasets.transform_hash            the transform hash
                     back to the class names (transforms are                                       covers the
                     not JSON-serialisable): a changed                                             transforms' settings
                     roi_size reuses a stale cache
CLI errors    1.6.1  python -m monai.bundle run ends a refusal  errors.install_cli_excepthook      the CLI prints the
                     raised in a config expression with         (installed by import pipeline      original exception's
                     RuntimeError("Failed to evaluate           under the CLI)                     message
                     ConfigExpression ...") after a long
                     traceback
progress bar  1.6.1  the engines attach each handler as         monitoring.progress_bar (binds     the engines pass
                     handler.attach(engine): ignite's           the output transform itself)       attach arguments, or
                     ProgressBar gets no output_transform                                          MONAI has a
                                                                                                   progress-bar handler
HD95 on CUDA  1.6.1  surface distances go through NumPy/SciPy   metrics.surface_distances          surface distances
                     on the host unless cuCIM and CuPy are      (method="torch" on CUDA)           stay on the tensors'
                     installed                                                                     device
CLI flags     1.6.1  python -m monai.bundle run (fire) passes   config.as_bool (every flag id:     the CLI reads
                     --amp false as the string "false", which   the engines' amp, fast.yaml's      true/false as
                     Python reads as true: AMP stays on         cpu_amp, resume, overwrite, tta)   booleans
============  =====  =========================================  =================================  =====================
"""
