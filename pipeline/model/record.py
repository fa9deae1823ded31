"""A run remembers what it is: ``<run_dir>/run.json``, written when training starts and checked on resume.

The record holds the command line, the ids that shape the network and the data, the network and the split; the
refusals that protect a finished run are described in `docs/after-training.md`."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pipeline.core.config import (
    as_bool,
    as_fold,
    as_path,
    config_files_in_argv,
    differing,
    overrides_in_argv,
)
from pipeline.core.distributed import computed_on_main_process, is_main_process
from pipeline.core.errors import UserError
from pipeline.core.files import FolderLock, atomic_write_text, file_sha256, hold_folder, read_json
from pipeline.core.guard import OutputGuard, is_within
from pipeline.core.kinds import RUN_RECORD, RUN_WRITES, is_run_record, kinds_in, refuse_other_kinds
from pipeline.core.provenance import input_identity
from pipeline.data.datalist import folds_present
from pipeline.data.labels import Description, canonical_channel, describe
from pipeline.data.layouts import Case, order_by_name, output_guard
from pipeline.data.source import DataSource
from pipeline.data.transforms import parse_normalization, parse_spacing
from pipeline.model.network import check_roi_size, network_spec, roi_sizes
from pipeline.model.precision import check_device
from pipeline.model.recipe import (
    changed_configs,
    check_recipe,  # noqa: F401 - inference.yaml before 2026-12-06 names it here
    config_versions,
    preprocessing_overrides,
    recipe,
    recorded_preprocessing,
)

logger = logging.getLogger(__name__)

#: What a finished or interrupted training leaves in ``ckpt_dir``.
RUN_ARTEFACTS = ("checkpoint.pt", "model.pt", "model_last.pt")


#: Ids that must equal the record's for ``--resume true`` (``preprocessing``: the command line's overrides of the
#: shared preprocessing, `pipeline.model.recipe.recorded_preprocessing`).
RESUME_IDS = ("dataset_dir", "datalist", "datalist_sha256", "label_scheme", "fold", "folds", "seed", "spacing",
              "normalization", "preprocessing")


class RunError(UserError):
    """A run folder that cannot be used as asked; the message names the folder, the ids and the way out."""


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """``<run_dir>/run.json``, or None when the folder has none."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        content = read_json(path)
    except ValueError as e:
        raise RunError(f"{path} cannot be read ({e}); restore it, or pass another --run_dir") from None
    if not isinstance(content, dict):  # a user's list or number: no run's record, read as one it would fail later
        raise RunError(f"{path} holds no training run's record (not a JSON object with the run's ids), so no training "
                       "run wrote it: move it aside, or pass another --run_dir")
    if not is_run_record(content):  # a user's object: the callers refuse it or read it as no run (training does)
        return content
    wrong = next((f"{key} ({expected})" for key, expected, fits in _RECORD_FIELDS
                  if not fits(_field(content, key))), None)
    if wrong is not None:  # an edited record: its readers (the network, the patch, the channels) would fail on it
        raise RunError(f"{path}: the field {wrong} is not as training wrote it (edited since?); restore the run's "
                       "run.json, or pass another --run_dir")
    return content


_MISSING = object()


def _field(record: Mapping, key: str) -> object:
    """``record``'s value at a dotted ``key`` (``ids.roi_size``), `_MISSING` where a level is absent."""
    value: object = record
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _list_of(kind: type | tuple[type, ...]) -> Callable[[object], bool]:
    return lambda v: v is _MISSING or v is None or (isinstance(v, list) and all(
        isinstance(x, kind) and not isinstance(x, bool) for x in v))


def _one_of(*kinds: type) -> Callable[[object], bool]:
    return lambda v: v is _MISSING or v is None or (isinstance(v, kinds) and not isinstance(v, bool))


#: The fields of a run's record that its readers take apart, each with what training writes there (absent is
#: allowed: records of older code lack some): checked when it is read (`read_record`), so that an edited field is one
#: error naming it rather than a traceback in the reader.
_RECORD_FIELDS: tuple[tuple[str, str, Callable[[object], bool]], ...] = (
    ("ids", "an object", lambda v: v is _MISSING or isinstance(v, dict)),
    ("network", "an object naming its _target_", lambda v: v is _MISSING or (
        isinstance(v, dict) and isinstance(v.get("_target_"), str))),
    ("split", "an object of case-id lists", lambda v: v is _MISSING or v is None or (
        isinstance(v, dict) and all(_list_of(str)(x) for x in v.values()))),
    ("config_files", "a list of paths", _list_of(str)),
    ("config_sha256", "an object of digests", lambda v: v is _MISSING or v is None or (
        isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))),
    ("command", "a list of words", _list_of(str)),
    ("ckpt_dir", "a folder's path", _one_of(str)),
    ("ids.preprocessing", "an object", lambda v: v is _MISSING or v is None or isinstance(v, dict)),
    ("ids.roi_size", "a list of whole numbers", _list_of(int)),
    ("ids.channels", "a list of channel names", _list_of(str)),
    ("ids.spacing", "null, a number or a list of numbers", lambda v: _one_of(int, float, str)(v) or _list_of(
        (int, float))(v)),
    ("ids.label_scheme", "a scheme's name", _one_of(str)),
    ("ids.fold", "a fold number or 'all'", _one_of(int, str)),
    ("ids.folds", "a whole number", _one_of(int)),
    ("ids.seed", "a whole number", _one_of(int)),
    ("training_images", "a list", lambda v: v is _MISSING or v is None or isinstance(v, list)),
)


def write_record(run_dir: str | os.PathLike, record: Mapping) -> None:
    atomic_write_text(Path(run_dir) / RUN_RECORD, json.dumps(record, indent=2, default=str))


def run_ids(data: DataSource, *, fold: object, roi_size: Sequence[int], spacing: object = None,
            normalization: object = None, argv: Sequence[str] | None = None) -> dict:
    """The ids recorded for a training run on ``data`` (paths resolved, the datalist's content hashed), with the
    overrides of the shared preprocessing on its command line ``argv`` (default ``sys.argv``)."""
    dataset_dir, datalist = data.dataset_dir, data.datalist_path
    return {
        "dataset_dir": str(Path(dataset_dir).expanduser().resolve()) if dataset_dir and not datalist else None,
        "datalist": str(Path(datalist).expanduser().resolve()) if datalist else None,
        "datalist_sha256": file_sha256(datalist) if datalist and Path(datalist).is_file() else None,
        "label_scheme": str(data.scheme),
        "channels": list(data.description.channels),
        "fold": as_fold(fold),
        "folds": len(folds_present(data.datalist)) if datalist else data.folds,  # a datalist's own, not --folds
        "seed": data.seed,
        "roi_size": roi_sizes(roi_size),  # one line for a value of another shape (--set roi_size 50)
        "spacing": spacing_value(spacing),
        "normalization": parse_normalization(normalization),
        "preprocessing": preprocessing_overrides(sys.argv if argv is None else argv),
    }


def _artefacts(ckpt_dir: Path) -> list[Path]:
    return [ckpt_dir / name for name in RUN_ARTEFACTS if (ckpt_dir / name).exists()]


def start_training(run_dir: object, ckpt_dir: object, *, resume: bool | str, overwrite: bool | str, ids: Mapping,
                   network_factory: functools.partial, guard: OutputGuard | None = None,
                   folders: Mapping[str, object] | None = None, device: object = None,
                   after_data_check: bool = False) -> dict:
    """Before any work: refuse a run folder, a checkpoint folder or another folder the run writes (``folders``:
    ``{id: folder}``, such as ``cache_dir`` and ``tensorboard_dir``; an empty one is unused) among the inputs
    (``guard``, the data's), and a ``device`` this machine does not have; lock the run folder (and the checkpoint
    folder where it lies outside it), refuse to replace a run, check a resume, write ``run.json``. ``--overwrite``
    deletes only what a run wrote there, never an input.

    With ``after_data_check`` (train.yaml) the deletions of ``--overwrite`` and the new ``run.json`` wait for
    `record_split`, which runs after the data check: a refused dataset leaves the finished run as it was.

    Runs on rank 0 alone under several processes (the others get its result, or its refusal).

    Raises:
        RunError: the run folder holds a run and neither ``resume`` nor ``overwrite`` is given; both are given;
            or ``resume`` with ids or a network other than the record's (each differing id named).
        UserError: the run folder is, holds or lies among the inputs.
    """
    check_roi_size(network_factory, ids.get("roi_size", ()))
    if device is not None:
        check_device(device)
    guard = guard if guard is not None else output_guard()  # no input known: any dataset's folder still refused
    run = str(guard.folder(run_dir, what="a training run", option="--run_dir"))
    for name, folder in {"ckpt_dir": ckpt_dir, **(folders or {})}.items():
        if folder not in (None, ""):
            guard.folder(folder, what=f"the run's {name}", option=f"--{name}")
    logs = (folders or {}).get("tensorboard_dir")
    return computed_on_main_process(_start_training, run, as_path(ckpt_dir, "ckpt_dir"), as_bool(resume, "resume"),
                                    as_bool(overwrite, "overwrite"), dict(ids), network_spec(network_factory), guard,
                                    str(logs) if logs not in (None, "") else None, bool(after_data_check))


#: What `start_training` left for `record_split` to do once the data check has passed, by run folder (`_key`):
#: the files ``--overwrite`` deletes. Each start replaces its run's entry, so a refused start's list never reaches
#: a later start's `record_split` in the same process.
_PENDING: dict[str, list[Path]] = {}


def _key(run: str | os.PathLike) -> str:
    return str(Path(run).expanduser().resolve())


def _delete_old_run(found: Sequence[Path]) -> None:
    """``--overwrite``: delete the old run's files (already checked to be no input of this run)."""
    for path in found:
        path.unlink(missing_ok=True)
    if found:
        logger.warning("--overwrite true: deleted %s", ", ".join(str(p) for p in found))


def _old_logs(run: Path, logs: str | None) -> list[Path]:
    """The TensorBoard event files of the run in ``run``: those directly in its ``tensorboard_dir`` when that lies
    below the run folder (a folder shared by several runs is theirs too, and stays; so is the run folder itself)."""
    folder = Path(logs).resolve() if logs else None
    if folder is None or not folder.is_dir() or folder == run.resolve() or not is_within(folder, run.resolve()):
        return []  # none, shared, or the run folder itself (its folds' folders below hold their own events)
    return sorted(folder.glob("events.out.tfevents.*"))  # the writer's own, not those of folders below


def _refuse_users_files(run: Path, record: dict | None) -> None:
    """Refuse a run folder holding files training writes (``run.json``, `RUN_WRITES`) that no run wrote: a folder
    without a run's record (models in it or not), or a ``run.json`` that is not a run's record (no ``ids``). A
    user's ``metadata.json`` was replaced (with ``--overwrite`` too), their ``history.csv`` failed the run after its
    first epoch."""
    if record is not None and not is_run_record(record):
        theirs = [run / RUN_RECORD]
    elif record is None:  # models or not (a user's, or a copy's): no run wrote these here
        theirs = [run / name for name in RUN_WRITES if (run / name).exists() or (run / name).is_symlink()]
    else:
        return
    if theirs:
        them = "them" if len(theirs) > 1 else "it"
        why = ("it is no training run's record (no ids)" if theirs[0].name == RUN_RECORD
               else f"the folder has no run's {RUN_RECORD}")
        raise RunError(f"{run} holds {', '.join(str(p) for p in theirs)}, which no training run wrote ({why}), and "
                       f"training writes its own {theirs[0].name} there: move {them} aside, or pass another --run_dir "
                       "(--overwrite replaces only what a run wrote)")


def _start_training(run_dir: str, ckpt_dir: str, resume: bool, overwrite: bool, ids: dict, network: dict,
                    guard: OutputGuard | None, logs: str | None = None, after_data_check: bool = False) -> dict:
    run, ckpt = Path(run_dir), Path(ckpt_dir)
    if resume and overwrite:
        raise RunError("--resume true and --overwrite true contradict each other: pass one of them")
    refuse_other_kinds(run, "run", "--run_dir")  # not among a model's segmentations, an evaluation's tables
    refuse_other_kinds(ckpt, "run", "--ckpt_dir")  # nor its models
    hold_folder(run, what="training")
    _PENDING.pop(_key(run), None)  # a refused earlier start's deletions are not this one's
    if not is_within(ckpt.resolve(), run.resolve()):  # models elsewhere: one run writes them at a time
        hold_folder(ckpt, what="training (its models)")
    # absolute, as MONAI read them from this working folder: inference may run from another (`recorded_config`)
    files = [str(Path(f).expanduser().resolve()) for f in config_files_in_argv(sys.argv)]
    versions, changed = config_versions(files), []  # the recipe's version (compared on resume, then recorded)
    found = _artefacts(ckpt)
    record = read_record(run)
    _refuse_users_files(run, record)
    recorded = Path(record["ckpt_dir"]) if record and record.get("ckpt_dir") else None
    # no model here, but the record names a folder elsewhere that holds some: a run trained with --ckpt_dir there (or
    # a copied run folder whose record still names the original's models, which are that run's, never deleted here)
    elsewhere = ([] if found or recorded is None or recorded.resolve() == ckpt.resolve() else _artefacts(recorded))
    if elsewhere and not overwrite:
        names = ", ".join(p.name for p in elsewhere)
        raise RunError(f"{run} already holds a run whose record names its models in {recorded} ({names}; "
                       f"{run / RUN_RECORD}). If this is the run trained with --ckpt_dir {recorded}, pass that "
                       "--ckpt_dir with --resume true to continue it; if this folder is a copy of another run's, "
                       "resume that run in its own folder. Or pass --overwrite true to start afresh here (those "
                       "models stay where they are), or another --run_dir")
    if elsewhere:
        logger.warning("--overwrite true: the models in %s (named by the old %s) are left where they are", recorded,
                       RUN_RECORD)
    if found and not (resume or overwrite):
        names = ", ".join(p.name for p in found)
        raise RunError(f"{run} already holds a run ({names} in {ckpt}); pass --resume true to continue it, "
                       "--overwrite true to delete it and start afresh, or another --run_dir")
    if overwrite:
        if record and record.get("datalist_written"):  # the split the old run made: not the user's file
            found.append(run / "datalist.json")
        found += _old_logs(run, logs)  # else TensorBoard draws the old curves under the new run's, step by step
        kept = [p for p in found if guard is not None and not guard.may_delete(p)]
        found = [p for p in found if p not in kept]
        if kept:
            logger.warning("--overwrite true: kept %s, an input of this run", ", ".join(str(p) for p in kept))
        deleted, found, record = found, [], None
    else:
        deleted = []
    if resume and found and not (ckpt / RUN_ARTEFACTS[0]).exists():  # models, but no training state to continue
        raise RunError(f"--resume true: {ckpt} holds {', '.join(p.name for p in found)} but no {RUN_ARTEFACTS[0]} "
                       "(the training state), so there is nothing to continue: training would start at epoch 1 and "
                       "replace them. Pass --overwrite true to start afresh, or another --run_dir")
    if resume and record is not None and found:  # a checkpoint to continue: it must be the same run
        was = {**{k: record.get("ids", {}).get(k) for k in RESUME_IDS}, "normalization": recorded_normalization(record),
               "preprocessing": recorded_preprocessing(record)}
        diffs = differing(was, {k: ids.get(k) for k in RESUME_IDS})
        diffs += [f"network {d}" for d in differing(record.get("network", {}), network)]
        before, now = recipe(record), recipe({"config_files": files})
        if before is not None and now is not None and before != now:  # budget.yaml is --minutes, fast.yaml --plain
            diffs.append(f"recipe (the config overlays) {before} -> {now} (budget.yaml is python -m pipeline train "
                         "--minutes N; fast.yaml is python -m pipeline train without --plain; a network's is python "
                         "-m pipeline train --network NAME)")
        if diffs:
            raise RunError(f"--resume true: this run ({run / RUN_RECORD}) was started with other settings: "
                           f"{'; '.join(diffs)}. Pass the recorded values to continue it, or another --run_dir")
        changed = changed_configs(record, versions)
        if changed:
            logger.warning("--resume true: %s changed since this run started (their sha256 in %s): the rest of the "
                           "run trains with the changed recipe", ", ".join(changed), run / RUN_RECORD)
    elif resume and found:
        raise RunError(f"--resume true: {run} holds {found[0].name} but no {RUN_RECORD}, so what it was trained on "
                       "cannot be checked; pass --overwrite true to start afresh, or another --run_dir")
    if resume and not found:
        logger.info("--resume true: no checkpoint in %s, so training starts at epoch 1 with these settings", ckpt)
    new = {"command": list(sys.argv), "config_files": files, "config_sha256": versions, "ids": ids,
           "network": network, "ckpt_dir": str(ckpt.resolve())}  # whose models this record describes
    if resume and record is not None and found:
        new["split"] = record.get("split")
        new["training_images"] = record.get("training_images")
        if record.get("config_sha256"):  # the version the run started with stays; each resume's changes are added
            new["config_sha256"] = record["config_sha256"]
            changes = list(record.get("resumed_with_changed") or [])
            if changed:
                changes.append({name: versions[name] for name in changed})
            if changes:
                new["resumed_with_changed"] = changes
    if record and record.get("datalist_written"):  # its datalist.json is training's own: rewritten with the new split
        new["datalist_written"] = True
    if after_data_check:  # record_split deletes and writes, once the data check has passed
        _PENDING[_key(run)] = deleted
        return new
    _delete_old_run(deleted)
    write_record(run, new)
    return new


def record_split(run_dir: str | os.PathLike, split: tuple[Sequence[dict], Sequence[dict]], *,
                 datalist: str | None = None, started: object = None, layout: str | None = None) -> tuple:
    """Record the training/validation case ids in ``run.json`` (rank 0), or check them on a resumed run.

    When training made the split itself (no datalist), it is also saved as ``<run_dir>/datalist.json``, unless
    a file of that name is already there and is not training's own (the user's: never replaced).
    ``started`` is the record `start_training` wrote (passing it makes the bundle resolve that first; it is not
    read again). ``layout`` (the data's, `pipeline.data.layouts`) goes into that datalist.json, so that evaluation
    reads its reference cases through their layout (pictures included), as it does the dataset folder's.
    train.yaml calls it as the ``initialize`` step ``split_record``.

    Returns:
        ``split`` itself.

    Raises:
        RunError: the run was resumed and its recorded split differs (the cases named).
    """
    if not is_main_process():
        return split
    run = Path(run_dir)
    # the record start_training wrote (or left to write here, after the data check), completed in place: the
    # bundle's `run_record` then holds the whole record
    record = started if isinstance(started, dict) else (read_record(run) or {})
    current = {"train": sorted(str(it["case"]) for it in split[0]),
               "validation": sorted(str(it["case"]) for it in split[1])}
    old = record.get("split")
    if old and old != current:
        moved = sorted(set(old.get("validation", [])) ^ set(current["validation"]))
        added = sorted((set(current["train"]) | set(current["validation"]))
                       - (set(old.get("train", [])) | set(old.get("validation", []))))
        raise RunError(f"--resume true: the split differs from the one this run was started with "
                       f"({run / RUN_RECORD}): validation cases changed {moved[:5]}"
                       f"{' ...' if len(moved) > 5 else ''}, new cases {added[:5]}; a resumed run would train on its "
                       "own validation cases. Resume with the same data and datalist, or start another --run_dir")
    _delete_old_run(_PENDING.pop(_key(run), []))  # --overwrite, now that the new run can start
    record["split"] = current
    if not record.get("training_images"):  # a resumed run keeps its own (the split is checked the same above)
        record["training_images"] = training_images(split[0])
    made = run / "datalist.json"
    record["datalist_written"] = bool(not datalist and (not made.exists() or record.get("datalist_written")))
    write_record(run, record)
    if record["datalist_written"]:

        ids = record.get("ids", {})
        desc = describe(ids.get("label_scheme") or "brats")
        dl = {"name": Path(str(ids.get("dataset_dir") or "")).name, "layout": layout,
              "label_scheme": ids.get("label_scheme"),
              "channels": list(desc.channels), "regions": list(desc.regions), "folds": ids.get("folds"),
              "seed": ids.get("seed"), "training": sorted([*split[0], *split[1]], key=lambda it: str(it["case"])),
              "test": []}
        atomic_write_text(run / "datalist.json", json.dumps(dl, indent=2))
    return split


def run_of_checkpoint(ckpt_path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """The run folder whose ``run.json`` describes ``ckpt_path``, by identity: ``<run>/models/model.pt`` -> ``<run>``
    when that folder has a record; else ``run_dir`` when the checkpoint lies in the models folder its record names
    (``ckpt_dir``; ``<run_dir>/models`` for a record without one), or when ``run_dir`` has no record (a bare
    checkpoint: the configuration describes it).

    Raises:
        RunError: ``run_dir``'s record describes another run's models: its network, grid, patch and channels would
            be applied to a model they do not describe.
    """
    ckpt = Path(ckpt_path)
    candidate = ckpt.parent.parent
    if "run" in kinds_in(candidate):  # the folder above models/ holds a run's record (a user's run.json does not count)
        return str(candidate)
    record = read_record(run_dir)
    if record is None:
        return str(run_dir)
    models = Path(record.get("ckpt_dir") or Path(run_dir) / "models")
    if ckpt.parent.resolve() == models.resolve():
        return str(run_dir)
    raise RunError(f"--ckpt_path {ckpt} is not a model of the run in {run_dir} (its models are in {models}), so that "
                   f"run's network, voxel size, patch and channels do not describe it: pass the --run_dir of the run "
                   f"that trained it (a snapshot of this run's own model: copy it into {models}); only a checkpoint "
                   "trained with the configuration's own settings may go with a --run_dir without run.json")


def refuse_training_in_progress(run_dir: str | os.PathLike, *, what: str) -> None:
    """Refuse to read ``run_dir``'s model for ``what`` (a cross-validation table, a fold ensemble) while its training
    still runs: its ``model.pt`` is the best so far, not the trained model.

    Raises:
        RunError: the run's lock (`FolderLock`, held by training) belongs to a live process.
    """
    lock = FolderLock(run_dir, what="training")
    holder = lock.holder()
    if holder is not None and holder.endswith(", training"):
        raise RunError(f"{run_dir} is still being trained ({holder}): its model.pt is not the trained model yet, so "
                       f"{what} would pass a half-trained model for a trained one; wait for it to finish, or leave "
                       f"that fold out (if no training runs there any more, delete {lock.path})")


def training_images(items: Sequence[dict]) -> list[list[str]]:
    """Each training case's images as ``[size, fast hash, sha256]`` (`pipeline.core.provenance.input_identity`), in
    the items' order: run.json's ``training_images``, by which `pipeline.model.held_out.trained_on` knows a training
    case under another name. Each file is read whole once."""
    return [[[r["size"], r["hash"], r["sha256"]] for r in input_identity(Case.from_item(it).images, digest=True)]
            for it in items if it.get("image")]


def model_interface(record: Mapping | None) -> dict:
    """What a trained model takes and gives, from its run.json: the network (its recorded arguments), the regions
    it outputs (its label scheme's), its input channels in order, the voxel size it computes at, its preprocessing
    overrides and its recipe (the overlays it trained with, whose inference settings apply to it). Two models
    that differ in any of these cannot stand in for each other: a fold ensemble feeds them one input, resampled
    and ordered for the first, and writes one set of regions. None where the record has no value."""
    ids = (record or {}).get("ids") or {}
    scheme = ids.get("label_scheme")
    return {"network": (record or {}).get("network"),
            "regions": list(describe(scheme).regions) if scheme else None,
            "channels": [canonical_channel(str(c)) for c in ids.get("channels") or []] or None,
            "spacing": spacing_value(ids.get("spacing")),
            "normalization": recorded_normalization(record) if record else None,
            "preprocessing": recorded_preprocessing(record) if record else None,
            "recipe": recipe(record)}


def check_regions(record: Mapping | None, description: Description) -> Description:
    """Refuse to write labels of ``description`` with a model trained on other regions (a ``brats2024`` model's four
    outputs written as ``brats2023`` labels, say); returns ``description``.

    Raises:
        RunError: the run's recorded scheme has other regions than the data's; both named, with the fix.
    """
    trained = (record or {}).get("ids", {}).get("label_scheme")
    if trained and list(describe(trained).regions) != list(description.regions):
        raise RunError(f"the model was trained on scheme {trained} (regions {', '.join(describe(trained).regions)}); "
                       f"the data to segment is read as {description.name} (regions "
                       f"{', '.join(description.regions)}): segment it with a model trained on its regions; only if "
                       f"the data really is numbered as {trained} (python -m pipeline check DATA --label_scheme "
                       f"{trained} says so) pass --label_scheme {trained}")
    return description


def spacing_value(spacing: object) -> list[float] | None:
    """The ``spacing`` id as recorded: None, or three voxel sizes in mm (`pipeline.data.transforms.parse_spacing`)."""
    return parse_spacing(spacing)


def recorded_spacing(record: Mapping | None, given: object = None) -> list[float] | None:
    """The voxel size (mm) the model computes at, which inference resamples to (None: the data's own): the one its
    run trained at (run.json); for a checkpoint without a record, ``given`` (the ``spacing`` id).

    Raises:
        RunError: ``given`` names another voxel size than the run trained at (the model would see other voxels).
    """
    ids = (record or {}).get("ids") or {}
    given = spacing_value(given)
    if "spacing" not in ids:
        return given
    trained = spacing_value(ids["spacing"])
    if given is not None and given != trained:
        grid = f"{trained} mm" if trained else "the data's own voxel size"
        raise RunError(f"--spacing {given}: the model was trained at {grid} (its run.json), and inference resamples "
                       "to the model's grid: drop --spacing (or pass the recipe the model was trained with)")
    return trained


def recorded_normalization(record: Mapping | None, given: object = None) -> str:
    """The intensity normalisation the model was trained with, which inference applies: its run's (run.json; a run
    from before it was recorded: its command line's ``--normalization``, else ``zscore``); for a checkpoint
    without a record, ``given`` (the ``normalization`` id; None: ``zscore``).

    Raises:
        RunError: ``given`` names another normalisation than the run trained with.
    """
    given = None if given is None else parse_normalization(given)
    if not record:
        return given or parse_normalization(None)
    ids = record.get("ids") or {}
    trained = parse_normalization(ids["normalization"] if "normalization" in ids
                                  else overrides_in_argv(record.get("command") or []).get("normalization"))
    if given is not None and given != trained:
        raise RunError(f"--normalization {given}: the model was trained with {trained} (its run.json), and inference "
                       "normalises as the model was trained: drop --normalization")
    return trained


def channel_order(record: Mapping | None, description: Description) -> list[int] | None:
    """How the data's channels must be reordered for the model: None when they are the run's (or it recorded none),
    else the position in the data of each channel the model takes, matched by name (T1c is T1ce, t2f is FLAIR).

    Raises:
        RunError: the data's channels are not the model's (names differ, or their number): both named.
    """
    trained = [str(c) for c in ((record or {}).get("ids", {}).get("channels") or [])]
    data = [str(c) for c in description.channels]
    if not trained:
        return None
    try:
        return order_by_name(data, trained)  # the one matching by name, as datasets and datalists are matched
    except ValueError:
        raise RunError(f"the model was trained on the channels {', '.join(trained)}; the data to segment has "
                       f"{', '.join(data)} ({description.name}): segment data with the model's channels, or use a "
                       "model trained on these") from None


def match_channels(items: Sequence[dict], record: Mapping | None, description: Description) -> list[dict]:
    """``items`` with their image files (or 4D channel index) in the model's channel order (`channel_order`),
    matched by name, never by position; logged once when they are reordered."""
    order = channel_order(record, description)
    if order is None:
        return list(items)
    logger.info("the data lists its channels as %s, the model takes %s: each case's images reordered by name",
                ", ".join(description.channels), ", ".join(description.channels[i] for i in order))
    out = []
    for item in items:
        item = dict(item)
        if item.get("channel_index") is not None:
            item["channel_index"] = [item["channel_index"][i] for i in order]
        else:
            item["image"] = [item["image"][i] for i in order]
        out.append(item)
    return out


def recorded_roi_size(roi_size: Sequence[int], record: Mapping | None) -> list[int]:
    """The run's training patch size (the sliding window of its inference), else ``roi_size``."""
    recorded = (record or {}).get("ids", {}).get("roi_size")
    return [int(s) for s in (recorded or roi_size)]


def write_metadata(run_dir: str | os.PathLike, meta: Mapping | None, description: object) -> Path | None:
    """``<run_dir>/metadata.json``: the bundle's metadata (``@_meta_``) with ``network_data_format`` made from the
    run's dataset description (input channels, output regions, their names), rank 0 only.

    The bundle's own ``configs/metadata.json`` describes the default (BraTS: 4 channels, 3 regions); a run on other
    data (BraTS 2024, an nnU-Net dataset) carries its own, so ``verify_net_in_out`` and exports of that run use it.
    """
    if not is_main_process() or not meta:
        return None
    out = json.loads(json.dumps(meta, default=str))
    fmt = out.setdefault("network_data_format", {})
    image = fmt.setdefault("inputs", {}).setdefault("image", {})
    pred = fmt.setdefault("outputs", {}).setdefault("pred", {})
    channels, regions = list(description.channels), list(description.regions)
    image.update(num_channels=len(channels), channel_def={str(i): c for i, c in enumerate(channels)})
    pred.update(num_channels=len(regions), channel_def={str(i): r for i, r in enumerate(regions)})
    out["label_scheme"] = description.name
    out.update(_label_prose(description, str(out.get("description", ""))))
    return atomic_write_text(Path(run_dir) / "metadata.json", json.dumps(out, indent=2))


def _label_prose(description: Description, prose: str) -> dict[str, str]:
    """``label_classes``, ``pred_classes`` and ``description`` of a run's metadata.json, stated from its dataset's
    description: the bundle's own text states BraTS 2018-2021's numbering, which a BraTS 2023+, MSD or nnU-Net run
    does not write."""
    labels = ", ".join(f"{v} {name}" for name, v in sorted(description.labels.items(), key=lambda kv: kv[1]))
    regions = "; ".join(f"{i} {name} = label(s) {', '.join(map(str, values))}"
                        for i, (name, values) in enumerate(description.regions.items()))
    written = ", ".join(f"{name} as {v}" for name, v in zip(description.regions, description.regions_class_order,
                                                          strict=True))
    ignore = f"; {description.ignore} marks unannotated voxels (nnU-Net's ignore label)" if description.ignore else ""
    return {
        "label_classes": f"{description.title}: 0 background, {labels}{ignore}. Converted for training to "
                         f"{len(description.regions)} region channels: {regions}",
        "pred_classes": f"one sigmoid channel per region ({', '.join(description.regions)}); written by inference as "
                        f"one uint8 label map in the dataset's own numbering, larger regions first: {written}",
        "description": re.sub(r"writes BraTS labels \([^)]*\)", f"writes labels in the numbering of "
                              f"{description.title}", prose),
    }
