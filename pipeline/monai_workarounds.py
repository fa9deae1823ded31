"""Every place the pipeline works around MONAI, in one table: what MONAI does, our answer, and when it can go.

The code stays with its concern (the checkpoint saver in `pipeline.training.checkpoints`, the validation Dice in
`pipeline.training.validation`, ...); this module only lists it, so that one page tells what a MONAI upgrade may let
us delete. "where" names an object of ``pipeline`` (``training.checkpoints.AtomicCheckpointSaver`` is
``pipeline.training.checkpoints.AtomicCheckpointSaver``) or a bundle config id; "MONAI" is the version the row was
written for (``pyproject.toml`` pins ``monai==1.6.1``). Before upgrading MONAI, read the last column of each row: where
the new version does what it says, use MONAI's own and delete our code and the row, else update the row's
version. ``tests/test_monai_workarounds.py`` holds the table to the installed MONAI and to the names in "where".

============  =====  ====================================  ==========================================  =================
topic         MONAI  what MONAI does                       where (in pipeline)                         goes when MONAI
============  =====  ====================================  ==========================================  =================
loss          1.6.1  DiceCELoss(sigmoid=True) takes a      training.losses.DiceBCELoss (budget.yaml);  DiceCELoss
                     softmax cross-entropy across the      train.yaml train#loss: DiceLoss on sigmoid  computes a
                     channels whenever there are more      outputs alone (a config comment)            per-channel BCE
                     than one: wrong for TC, WT, ET,                                                   with sigmoid=True
                     which overlap
val Dice      1.6.1  the MeanDice handler cannot set       training.validation.region_dice             MeanDice takes
                     ignore_empty: a case with an empty    (DiceMetric(ignore_empty=False) as an       ignore_empty
                     reference region scores NaN and       IgniteMetricHandler)
                     leaves the mean (BraTS: 1 or 0)
val schedule  1.6.1  ValidationHandler validates on        training.validation.FinalValidationHandler  ValidationHandler
                     EPOCH_COMPLETED(every=interval)                                                   also validates
                     only: a run shorter than, or not a                                                after the last
                     multiple of, val_interval ends                                                    epoch
                     unvalidated (no model.pt)
checkpoints   1.6.1  CheckpointSaver writes through        training.checkpoints.AtomicCheckpointSaver  CheckpointSaver
                     ignite's DiskSaver(atomic=False)      model.weights.atomic_torch_save             writes
                     (atomic would make the files                                                      atomically, with
                     user-only): a run killed while                                                    the umask's file
                     saving leaves a truncated model.pt                                                mode
resume        1.6.1  CheckpointSaver/CheckpointLoader      training.checkpoints.TrainingCheckpoint     its checkpoints
                     keep state dicts but no random        training.checkpoints.random_states          carry the
                     states (Python, NumPy, torch, each                                                generator states,
                     random transform's RandomState): a                                                the random
                     resumed run draws other patches                                                   transforms'
                                                                                                       included
regions       1.6.1  ConvertToMultiChannelBasedOnBratsCl   sesd  data.transforms.LabelsToRegionsd (th  a transform takes
                     hard-codes TC = label 1 | ET (1 is    tables of labels)                           a label -> region
                     oedema in MSD's numbering) and only                                               table
                     TC, WT, ET
imports       1.6.1  $import a.b in a bundle config binds  __getattr__ (submodules load on first use:  $import a.b binds
                     the name "a.b", not a: $a.b.f() then  configs $import pipeline)                   a, as Python's
                     fails                                                                             import does
orientation   1.6.1  every Orientationd built without      common.yaml orient gives labels: null (the  the deprecation
                     labels warns (FutureWarning) that     new default, said out loud: no warning, no  notice is dropped
                     the default became None (the          change)
                     meta-tensor's space)
quiet         1.6.1  prints notices that are harmless      monai_workarounds.QUIET,                    the notices go
                     here at every run: the config-        monai_workarounds.quiet (python -m          or can be turned
                     security notice, the overlays'        pipeline, its verbs, the demo)              off
                     folders, fast.yaml's training part
                     over inference.yaml
CPU autocast  1.6.1  the engines enter                     model.precision.cpu_autocast (network of    the engines
                     torch.autocast("cuda", ...) only: no  common.yaml and ensemble.yaml;              autocast on their
                     mixed precision on the CPU            training.fast.yaml cpu_amp)                 device's type
cache copy    1.6.1  CacheDataset deep-copies the cached   training.fast.without_cache_copy            never: a safe
                     item on every draw                                                                default, not a
                     (copy_cache=True): ~100 MB per BraTS                                              defect; it goes
                     case                                                                              when our
                                                                                                       cached_dataset
                                                                                                       takes copy_cache
metadata      1.6.1  MetaTensor tracking is switched per   training.fast.WithoutMetadata,              a Compose (or a
                     process (set_track_meta), not per     training.fast.without_metadata              transform) can
                     Compose; it costs ~1 ms of Python                                                 switch tracking
                     per patch                                                                         off for itself
contrasts     1.6.1  LoadImaged stacks a case's files      data.check.check_case (its grid pass: the   never wholly (the
                     only if their affines pass            same test before training, with the case,   check reports
                     numpy.allclose                        the file, the fix)                          every case at
                     (_copy_compatible_dict), else it                                                  once); keep its
                     raises naming neither the case nor                                                test equal to
                     the fix                                                                           MONAI's
nifti reader  1.6.1  NibabelReader.read keeps its files    data.reader.NiftiReader (common.yaml        get_data takes
                     on the instance and get_data zips     load_image reader)                          the files with
                     the images with them: threads                                                 the images, not
                     sharing one LoadImaged (a                                                     from the reader
                     CacheDataset fill) stack a case's
                     4 contrasts as 1 when another
                     thread reads a label in between
disk cache    1.6.1  PersistentDataset saves each file in  training.cache._atomic_persistent_dataset   it writes beside
                     the system's temporary folder, then   (cached_dataset with a cache_dir)           the target and
                     moves it: a copy across file                                                      recomputes any
                     systems, cut short by a kill; and it                                              unreadable file
                     recomputes a bad file only on
                     'Invalid magic number'
cache key     1.6.1  PersistentDataset's hash_transform    training.cache.transform_hash               the transform
                     falls back to the class names                                                     hash covers the
                     (transforms are not                                                               transforms'
                     JSON-serialisable): a changed                                                     settings
                     roi_size reuses a stale cache
CLI errors    1.6.1  python -m monai.bundle run ends a     core.errors.install_cli_excepthook          the CLI prints
                     refusal raised in a config            (installed by import pipeline under the     the original
                     expression with RuntimeError("Failed  CLI)                                        exception's
                     to evaluate ConfigExpression ...")                                                message
                     after a long traceback
progress bar  1.6.1  the engines attach each handler as    training.monitoring.progress_bar (binds     the engines pass
                     handler.attach(engine): ignite's      the output transform itself)                attach arguments,
                     ProgressBar gets no output_transform                                              or MONAI has a
                                                                                                       progress-bar
                                                                                                       handler
HD95 on CUDA  1.6.1  surface distances go through          evaluation.metrics.surface_distances        surface distances
                     NumPy/SciPy on the host unless cuCIM  (method="torch" on CUDA)                    stay on the
                     and CuPy are installed                                                            tensors' device
CLI flags     1.6.1  python -m monai.bundle run (fire)     core.config.as_bool (every flag id: the     the CLI reads
                     passes --amp false as the string      engines' amp, training.fast.yaml's          true/false as
                     "false", which Python reads as true:  cpu_amp, resume, overwrite, tta)            booleans
                     AMP stays on
compile       1.6.1  SupervisedTrainer(compile=True)       model.compiled.CompiledNetwork (train.yaml  the trainer falls
                     compiles without a fallback (a        train#trainer#network, with --compile)      back to eager and
                     machine without a compiler fails at                                               passes plain
                     the first step) and warns at every                                                tensors silently
                     iteration for MetaTensor inputs
step capture  1.6.1  SupervisedTrainer._iteration fires    model.compiled.CompiledNetwork with         the trainer takes
                     events between the forward pass, the  compile_mode reduce-overhead: CUDA graphs   a compiled step
                     loss, the backward pass and the       of the forward and backward graphs; the     function
                     optimizer step: the whole step        fused AdamW step apart
                     cannot be captured as one CUDA graph
handler list  1.6.1  the bundle property check             training.averaging.as_handler (train.yaml   the check skips
                     (ConfigWorkflow._check_optional_id)   train#handlers lists the weight average     an entry that is
                     reads _target_ of every entry of      through it, not as @train#weight_average)   a reference
                     train#handlers: a bare @reference
                     there fails with a TypeError
============  =====  ====================================  ==========================================  =================
"""

from __future__ import annotations  # noqa: E402 - after the table, which is this module's docstring

import builtins  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import warnings  # noqa: E402

#: MONAI's messages that are harmless here, silenced by `quiet` (``--verbose`` shows them): (MONAI version,
#: category or logger, message pattern, why it is harmless). ``tests/test_monai_workarounds.py`` holds each to the
#: installed MONAI's source.
QUIET: tuple[tuple[str, str, str, str], ...] = (
    ("1.6.1", "UserWarning", r"parsing config_file ",
     "monai.bundle.scripts.create_workflow's notice that configs run code: the bundle's configs are this "
     "repository's code, reviewed as such"),
    ("1.6.1", "UserWarning", r"Can't merge entry \['\+train'\]",
     "monai.bundle.utils.merge_kv: fast.yaml's training part has nothing to merge into over inference.yaml"),
    ("1.6.1", "monai.bundle.workflows", r"Not all config files are in ",
     "ConfigWorkflow: the overlays live in configs/variants and configs/networks; --meta_file and "
     "--logging_file are always given"),
)


class _Drop(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def quiet(verbose: bool = False) -> None:
    """Silence the `QUIET` messages in this process (warnings filters, logging filters); nothing with
    ``verbose``. Called by ``python -m pipeline`` and by ``python -m pipeline.bundle run``, the verbs' launcher."""
    if verbose:
        return
    for _, kind, pattern, _ in QUIET:
        if kind.endswith("Warning"):
            warnings.filterwarnings("ignore", message=pattern, category=getattr(builtins, kind))
        else:
            logging.getLogger(kind).addFilter(_Drop(pattern))
