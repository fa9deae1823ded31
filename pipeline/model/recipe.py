"""What a run trained with besides its ids (`pipeline.model.record`): its config files (the overlays, each file's
SHA-256) and its command line's overrides of the shared preprocessing. Training records them in ``run.json``;
inference applies the same preprocessing or is refused (`check_preprocessing`), and is warned when an overlay is
left out or a file changed (`check_recipe`)."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.core.config import config_files_in_argv, differing, overrides_in_argv
from pipeline.core.errors import UserError
from pipeline.core.files import file_sha256

logger = logging.getLogger(__name__)


#: The shared preprocessing's ids (common.yaml) that a training command line may override (``--normalization
#: percentile``, ``--crop_foreground#margin 4``): recorded in run.json (``ids.preprocessing``) and applied by
#: inference, whose windows must see what training saw. The voxel size, patch size and channels are recorded by
#: value instead (``ids.spacing``, ``roi_size``, ``channels``; `pipeline.model.record.recorded_spacing`, ...).
PREPROCESSING_IDS = ("normalization", "normalize", "load_image", "select_channels", "orient", "crop_foreground",
                     "resample")


def preprocessing_overrides(argv: Sequence[str]) -> dict[str, str]:
    """The overrides of `PREPROCESSING_IDS` (or of an id below one, ``normalize::method``) on a ``python -m
    monai.bundle run`` command line: ``{id: value}``, as given."""
    return {k: v for k, v in overrides_in_argv(argv).items() if k.split("::")[0] in PREPROCESSING_IDS}


def recorded_preprocessing(record: Mapping | None) -> dict[str, str]:
    """The preprocessing overrides a run trained with (run.json's ``ids.preprocessing``; a record from before it
    was recorded: those of its command line); ``{}`` for none, or without a record."""
    ids = (record or {}).get("ids") or {}
    if "preprocessing" in ids:
        return dict(ids["preprocessing"] or {})
    return preprocessing_overrides((record or {}).get("command") or [])


def preprocessing_flags(overrides: Mapping[str, str]) -> str:
    """``--id value ...`` of ``overrides``, as a shell takes them."""
    return " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in overrides.items())


def check_preprocessing(record: Mapping | None, run_dir: str | os.PathLike,
                        argv: Sequence[str] | None = None) -> dict[str, str]:
    """Refuse an inference whose command line overrides the shared preprocessing otherwise than its run's training
    did (`recorded_preprocessing`): a model trained with ``--normalization percentile`` and run without it, or
    the reverse, would see other intensities than it learnt from and score a wrong Dice. ``python -m pipeline
    infer`` and ``cv`` pass the run's own (`pipeline.bundle.inference_command`), as its ``next:`` command does.
    Returns the run's overrides; nothing is compared outside MONAI's CLI (no ``--config_file`` in ``argv``).

    Raises:
        UserError: the overrides differ (each id named), with the flags to pass.
    """
    argv = sys.argv if argv is None else argv
    if not record or not config_files_in_argv(argv):
        return {}
    trained, given = recorded_preprocessing(record), preprocessing_overrides(argv)
    if trained != given:
        raise UserError(
            f"{run_dir} was trained with {preprocessing_flags(trained) or 'its config files preprocessing as they are'}"
            f", and this inference gives {preprocessing_flags(given) or 'none of those overrides'} "
            f"({'; '.join(differing(trained, given))}): the model would see other intensities or voxels than it "
            f"learnt from. Pass {preprocessing_flags(trained) or 'no preprocessing override'} as its run.json records"
            f", or run python -m pipeline infer --run {run_dir}, which applies the run's own")
    return trained


def config_versions(files: Sequence[str]) -> dict[str, str]:
    """The recipe's version as run.json records it: each config file's name -> the SHA-256 of its content (a
    file that cannot be read is left out)."""
    out = {}
    for f in files:
        try:
            out[Path(f).name] = file_sha256(f)
        except OSError:
            continue
    return out


def changed_configs(record: Mapping | None, versions: Mapping[str, str]) -> list[str]:
    """The config files of ``versions`` (`config_versions` of the files given now) whose content differs from the
    version ``record`` holds; none for a record from before versions were recorded."""
    recorded = (record or {}).get("config_sha256") or {}
    return [name for name, sha in versions.items() if name in recorded and recorded[name] != sha]


def recipe(record: Mapping | None) -> list[str] | None:
    """The overlays a run was trained with (``fast.yaml``, ``budget.yaml``, a network's), by file name: what its
    inference applies besides common + inference (`pipeline.bundle.inference_files`: the budget recipe's
    post-processing, say); None where the record names no config files."""
    files = (record or {}).get("config_files")
    if not files:
        return None
    return [Path(f).name for f in files if Path(f).name not in ("common.yaml", "train.yaml", "multi_gpu_train.yaml")]


def check_recipe(record: Mapping | None, run_dir: str | os.PathLike, argv: Sequence[str] | None = None) -> list[str]:
    """Warn when inference runs without an overlay its run trained with (a hand-built ``--config_file`` list:
    budget.yaml's post-processing and TTA would be left out, and the Dice would not be the recipe's), or with a
    config file whose content changed since the run trained (`changed_configs`); returns the overlays missing. The
    network, its grid, patch size and channels come from the record whatever the list (`recorded_network`,
    `recorded_spacing`, `recorded_roi_size`, `channel_order`). Nothing to compare outside MONAI's CLI (no
    ``--config_file`` in ``argv``) or for a run that recorded none."""
    given = config_files_in_argv(sys.argv if argv is None else argv)
    if not given or not record:
        return []
    trained = recipe(record) or []
    names = {Path(f).name for f in given}
    missing = [f for f in trained if f not in names]
    if missing:
        logger.warning("%s trained with %s, which this inference's --config_file leaves out: its settings (the budget "
                       "recipe's post-processing, say) are not applied. python -m pipeline infer --run %s uses the "
                       "run's own list; python -m pipeline.bundle configs inference --run %s prints it",
                       run_dir, ", ".join(missing), run_dir, run_dir)
    changed = changed_configs(record, config_versions(given))
    if changed:
        logger.warning("%s changed since %s was trained (their sha256 in its run.json): this inference applies their "
                       "settings as they are now (post-processing, test-time augmentation), not as the run had them",
                       ", ".join(changed), run_dir)
    return missing
