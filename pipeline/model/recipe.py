"""What a run trained with besides its ids (`pipeline.model.record`): its config files (the overlays, each file's
SHA-256) and its command line's overrides of the shared preprocessing. Training records them in ``run.json``;
inference applies the same preprocessing or is refused (`check_preprocessing`), and is warned when an overlay is
left out or a file changed (`check_recipe`)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.core.config import cli_value, config_files_in_argv, differing, overrides_in_argv
from pipeline.core.errors import UserError
from pipeline.core.files import file_sha256

logger = logging.getLogger(__name__)


#: The shared preprocessing's components (common.yaml) whose settings a training command line may override
#: (``--crop_foreground#margin 4``, ``--normalize#nonzero false``): recorded in run.json (``ids.preprocessing``)
#: and applied by inference, whose windows must see what training saw. The named options are recorded by value
#: instead, and inference takes them from the record: ``spacing``, ``normalization``, ``roi_size``, ``channels``
#: (`pipeline.model.record.recorded_spacing`, `recorded_normalization`, ...).
PREPROCESSING_IDS = ("load_image", "select_channels", "orient", "crop_foreground", "resample", "normalize")


def preprocessing_overrides(argv: Sequence[str]) -> dict[str, object]:
    """The overrides of an id of `PREPROCESSING_IDS` or below one (``normalize::nonzero``) on a ``python -m
    monai.bundle run`` command line: ``{id: value}``, values as MONAI's CLI reads them (`overrides_in_argv`) and
    as JSON keeps them (a tuple is a list)."""
    found = {k: v for k, v in overrides_in_argv(argv).items() if k.split("::")[0] in PREPROCESSING_IDS}
    return json.loads(json.dumps(found, default=str))


def recorded_preprocessing(record: Mapping | None) -> dict[str, object]:
    """The preprocessing overrides a run trained with (run.json's ``ids.preprocessing``; a record from before they
    were recorded: those of its command line, the last start's or resume's); ``{}`` for none, or no record."""
    ids = (record or {}).get("ids") or {}
    if "preprocessing" in ids and "normalization" in ids:  # recorded as now (before: strings, and normalization)
        return dict(ids["preprocessing"] or {})
    return preprocessing_overrides((record or {}).get("command") or [])


def inference_overrides(record: Mapping | None, extra: Sequence[str] = ()) -> dict[str, str]:
    """The run's preprocessing overrides (`recorded_preprocessing`) as command-line words its inference passes
    (`cli_value`: read back as recorded), less those the words ``extra`` give (the caller's, which then decide)."""
    later = set(overrides_in_argv(extra))
    return {k: cli_value(v) for k, v in recorded_preprocessing(record).items() if k not in later}


def preprocessing_flags(overrides: Mapping[str, object]) -> str:
    """``--id value ...`` of ``overrides``, as a shell takes them."""
    return " ".join(f"--{k} {shlex.quote(cli_value(v))}" for k, v in overrides.items())


def check_preprocessing(record: Mapping | None, run_dir: str | os.PathLike,
                        argv: Sequence[str] | None = None) -> dict[str, object]:
    """Refuse an inference whose command line overrides the shared preprocessing otherwise than its run's training
    did (`recorded_preprocessing`; values compared as MONAI reads them, so ``[2,2,2]`` is ``[2, 2, 2]``): a model
    trained with ``--crop_foreground#margin 8`` and run without it, or the reverse, would see other voxels than it
    learnt from. ``python -m pipeline infer`` and ``cv`` pass the run's own (`pipeline.bundle.inference_command`),
    as its ``next:`` line and ``python -m pipeline.bundle flags inference --run RUN`` do. Returns the run's
    overrides; nothing is compared outside MONAI's CLI (no ``--config_file`` in ``argv``).

    Raises:
        UserError: the overrides differ (each id named), with the flags to pass.
    """
    argv = sys.argv if argv is None else argv
    if not record or not config_files_in_argv(argv):
        return {}
    trained, given = recorded_preprocessing(record), preprocessing_overrides(argv)
    if trained != given:
        as_configured = "the preprocessing of its config files, without overrides"
        raise UserError(
            f"{run_dir} was trained with {preprocessing_flags(trained) or as_configured}"
            f", and this inference gives {preprocessing_flags(given) or 'none of those overrides'} "
            f"({'; '.join(differing(trained, given))}): the model would see other intensities or voxels than it "
            f"learnt from. Pass {preprocessing_flags(trained) or 'no preprocessing override'} as its run.json "
            f"records (python -m pipeline.bundle flags inference --run {run_dir} prints them; python -m pipeline "
            f"infer --run {run_dir} passes them)")
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
