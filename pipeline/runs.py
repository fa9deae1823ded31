"""A run remembers what it is: ``<run_dir>/run.json``, written when training starts and checked on resume.

The record holds the command line, the ids that shape the network and the data, and the split::

    {"command": [...], "config_files": [...],
     "ids": {"dataset_dir": ..., "datalist": ..., "datalist_sha256": ..., "label_scheme": ..., "fold": 0,
             "folds": 5, "seed": 0, "roi_size": [128, 128, 128]},
     "network": {"_target_": "monai.networks.nets.unet.UNet", "channels": [...], ...},
     "split": {"train": [case ids], "validation": [case ids]}}

- Training into a run folder that holds ``checkpoint.pt``, ``model.pt`` or ``model_last.pt`` refuses unless
  ``--resume true`` (continue it) or ``--overwrite true`` (delete them and start afresh); only one process
  trains into a run folder at a time (:class:`pipeline.files.FolderLock`).
- ``--resume true`` with another fold, split, dataset, label scheme or network than the record refuses, naming
  each differing id (:func:`start_training`, :func:`record_split`).
- Inference, export and ensembling build the network from the record (:func:`recorded_network`), so a model
  trained with ``demo.yaml`` or ``segresnet.yaml`` is segmented without repeating them; a checkpoint that does
  not fit the network says which ids differ (:func:`load_weights`).

The network's arguments come from the bundle's ``network_factory`` (``_mode_: callable``): the class and the
resolved keyword arguments, plain JSON values.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from pipeline.config import as_bool
from pipeline.distributed import computed_on_main_process, is_main_process
from pipeline.errors import UserError
from pipeline.files import FolderLock, atomic_write_text

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"
#: What a finished or interrupted training leaves in ``ckpt_dir``.
RUN_ARTEFACTS = ("checkpoint.pt", "model.pt", "model_last.pt")
#: Ids that must equal the record's for ``--resume true``.
RESUME_IDS = ("dataset_dir", "datalist", "datalist_sha256", "label_scheme", "fold", "folds", "seed")

_LOCKS: dict[str, FolderLock] = {}


class RunError(UserError):
    """A run folder that cannot be used as asked; the message names the folder, the ids and the way out."""


# ------------------------------------------------------------------------------------------------------------
# The network's description
# ------------------------------------------------------------------------------------------------------------


def _plain(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    raise RunError(f"the network argument {value!r} ({type(value).__name__}) cannot be recorded in {RUN_RECORD}; "
                   "give network_factory plain values (numbers, strings, lists)")


def network_spec(factory: functools.partial) -> dict:
    """``{"_target_": "module.Class", **keyword arguments}`` of a ``network_factory`` (``_mode_: callable``)."""
    if not isinstance(factory, functools.partial):
        raise RunError(f"network_factory must be a partial (_mode_: callable), got {type(factory).__name__}")
    target = factory.func
    return {"_target_": f"{target.__module__}.{target.__qualname__}",
            **{k: _plain(v) for k, v in sorted(factory.keywords.items())}}


def build_from_spec(spec: Mapping) -> torch.nn.Module:
    """The network a :func:`network_spec` describes."""
    module, _, name = str(spec["_target_"]).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**{k: v for k, v in spec.items() if k != "_target_"})


def differing(recorded: Mapping, current: Mapping) -> list[str]:
    """``"key: recorded -> current"`` for each key whose values differ (keys of either side)."""
    return [f"{k}: {recorded.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(recorded) | set(current))
            if recorded.get(k) != current.get(k)]


# ------------------------------------------------------------------------------------------------------------
# The record
# ------------------------------------------------------------------------------------------------------------


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """``<run_dir>/run.json``, or None when the folder has none."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise RunError(f"{path} cannot be read ({e}); restore it, or pass another --run_dir") from None


def _write_record(run_dir: str | os.PathLike, record: Mapping) -> None:
    atomic_write_text(Path(run_dir) / RUN_RECORD, json.dumps(record, indent=2, default=str))


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _config_files(argv: Sequence[str]) -> list[str]:
    """The ``--config_file`` list of a ``python -m monai.bundle`` command line, as given."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--config_file=") else (
            argv[i + 1] if arg == "--config_file" and i + 1 < len(argv) else None)
        if value is not None:
            import ast

            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = value.split(",")
            return [str(p) for p in (parsed if isinstance(parsed, (list, tuple)) else [parsed])]
    return []


def run_ids(*, dataset_dir: str | None, datalist: str | None, label_scheme: str, fold: int, folds: int, seed: int,
            roi_size: Sequence[int]) -> dict:
    """The ids recorded for a training run (paths resolved, the datalist's content hashed)."""
    return {
        "dataset_dir": str(Path(dataset_dir).expanduser().resolve()) if dataset_dir and not datalist else None,
        "datalist": str(Path(datalist).expanduser().resolve()) if datalist else None,
        "datalist_sha256": _sha256(datalist) if datalist and Path(datalist).is_file() else None,
        "label_scheme": str(label_scheme),
        "fold": int(fold),
        "folds": int(folds),
        "seed": int(seed),
        "roi_size": [int(s) for s in roi_size],
    }


def _artefacts(ckpt_dir: Path) -> list[Path]:
    return [ckpt_dir / name for name in RUN_ARTEFACTS if (ckpt_dir / name).exists()]


def start_training(run_dir: str | os.PathLike, ckpt_dir: str | os.PathLike, *, resume: bool | str,
                   overwrite: bool | str, ids: Mapping, network_factory: functools.partial) -> dict:
    """Before any work: lock the run folder, refuse to replace a run, check a resume, write ``run.json``.

    Runs on rank 0 alone under several processes (the others get its result, or its refusal).

    Raises:
        RunError: the run folder holds a run and neither ``resume`` nor ``overwrite`` is given; both are given;
            or ``resume`` with ids or a network other than the record's (each differing id named).
    """
    check_roi_size(network_factory, ids.get("roi_size", ()))
    return computed_on_main_process(_start_training, str(run_dir), str(ckpt_dir), as_bool(resume, "resume"),
                                    as_bool(overwrite, "overwrite"), dict(ids), network_spec(network_factory))


def _start_training(run_dir: str, ckpt_dir: str, resume: bool, overwrite: bool, ids: dict, network: dict) -> dict:
    run, ckpt = Path(run_dir), Path(ckpt_dir)
    if resume and overwrite:
        raise RunError("--resume true and --overwrite true contradict each other: pass one of them")
    lock = _LOCKS.get(str(run.resolve())) or FolderLock(run, what="training")
    lock.acquire()
    _LOCKS[str(run.resolve())] = lock
    found = _artefacts(ckpt)
    record = read_record(run)
    if found and not (resume or overwrite):
        names = ", ".join(p.name for p in found)
        raise RunError(f"{run} already holds a run ({names} in {ckpt}); pass --resume true to continue it, "
                       "--overwrite true to delete it and start afresh, or another --run_dir")
    if overwrite:
        if record and record.get("datalist_written"):  # the split the old run made: not the user's file
            found.append(run / "datalist.json")
        for path in found:
            path.unlink(missing_ok=True)
        if found:
            logger.warning("--overwrite true: deleted %s", ", ".join(str(p) for p in found))
        record = None
    if resume and record is not None and found:  # a checkpoint to continue: it must be the same run
        diffs = differing({k: record.get("ids", {}).get(k) for k in RESUME_IDS}, {k: ids.get(k) for k in RESUME_IDS})
        diffs += [f"network {d}" for d in differing(record.get("network", {}), network)]
        if diffs:
            raise RunError(f"--resume true: this run ({run / RUN_RECORD}) was started with other settings: "
                           f"{'; '.join(diffs)}. Pass the recorded values to continue it, or another --run_dir")
    elif resume and found:
        raise RunError(f"--resume true: {run} holds {found[0].name} but no {RUN_RECORD}, so what it was trained on "
                       "cannot be checked; pass --overwrite true to start afresh, or another --run_dir")
    if resume and not found:
        logger.info("--resume true: no checkpoint in %s, so training starts at epoch 1 with these settings", ckpt)
    new = {"command": list(sys.argv), "config_files": _config_files(sys.argv), "ids": ids, "network": network}
    if resume and record is not None and found:
        new["split"] = record.get("split")
    if record and record.get("datalist_written"):  # its datalist.json is training's own: rewritten with the new split
        new["datalist_written"] = True
    _write_record(run, new)
    return new


def record_split(run_dir: str | os.PathLike, split: tuple[Sequence[dict], Sequence[dict]], *,
                 datalist: str | None = None, started: object = None) -> tuple:
    """Record the training/validation case ids in ``run.json`` (rank 0), or check them on a resumed run.

    When training made the split itself (no datalist), it is also saved as ``<run_dir>/datalist.json``, unless
    a file of that name is already there and is not training's own (the user's: never replaced).
    ``started`` is the result of :func:`start_training`: passing it makes the bundle resolve that first.
    train.yaml calls it as the ``initialize`` step ``split_record``.

    Returns:
        ``split`` itself.

    Raises:
        RunError: the run was resumed and its recorded split differs (the cases named).
    """
    if not is_main_process():
        return split
    run = Path(run_dir)
    record = read_record(run) or {}
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
    record["split"] = current
    made = run / "datalist.json"
    record["datalist_written"] = bool(not datalist and (not made.exists() or record.get("datalist_written")))
    _write_record(run, record)
    if record["datalist_written"]:
        from pipeline.labels import describe

        ids = record.get("ids", {})
        desc = describe(ids.get("label_scheme") or "brats")
        dl = {"name": Path(str(ids.get("dataset_dir") or "")).name, "label_scheme": ids.get("label_scheme"),
              "channels": list(desc.channels), "regions": list(desc.regions), "folds": ids.get("folds"),
              "seed": ids.get("seed"), "training": sorted([*split[0], *split[1]], key=lambda it: str(it["case"])),
              "test": []}
        atomic_write_text(run / "datalist.json", json.dumps(dl, indent=2))
    return split


# ------------------------------------------------------------------------------------------------------------
# Inference from a run
# ------------------------------------------------------------------------------------------------------------


def run_of_checkpoint(ckpt_path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """The run folder whose ``run.json`` describes ``ckpt_path``: ``<run>/models/model.pt`` -> ``<run>`` when that
    folder has a record, else ``run_dir``."""
    candidate = Path(ckpt_path).parent.parent
    return str(candidate) if (candidate / RUN_RECORD).is_file() else str(run_dir)


def recorded_network(network_factory: functools.partial, run_dir: str | os.PathLike) -> torch.nn.Module:
    """The network of ``<run_dir>/run.json`` when there is one (logging the ids that differ from the config's),
    else the config's ``network_factory()``."""
    record = read_record(run_dir) if run_dir else None
    if record is None or "network" not in record:
        return network_factory()
    spec, current = record["network"], network_spec(network_factory)
    diffs = differing(spec, current)
    if diffs:
        logger.info("network from %s (the run's own, not the config's: %s)", Path(run_dir) / RUN_RECORD,
                    "; ".join(diffs))
    return build_from_spec(spec)


def check_regions(run_dir: str | os.PathLike, scheme: str) -> str:
    """Refuse to write labels of ``scheme`` with a model trained on other regions (a ``brats2024`` model's four
    outputs written as ``brats2023`` labels, say); returns ``scheme``.

    Raises:
        RunError: the run's recorded scheme has other regions than ``scheme``; both named, with the fix.
    """
    from pipeline.labels import describe

    record = read_record(run_dir) if run_dir else None
    trained = (record or {}).get("ids", {}).get("label_scheme")
    if trained and list(describe(trained).regions) != list(describe(scheme).regions):
        raise RunError(f"the model of {run_dir} was trained on scheme {trained} (regions "
                       f"{', '.join(describe(trained).regions)}); the data to segment is read as {scheme} (regions "
                       f"{', '.join(describe(scheme).regions)}): pass --label_scheme {trained} if the data is numbered "
                       "that way, or use a model trained on this scheme")
    return scheme


def recorded_roi_size(roi_size: Sequence[int], run_dir: str | os.PathLike) -> list[int]:
    """The run's training patch size (the sliding window of its inference), else ``roi_size``."""
    record = read_record(run_dir) if run_dir else None
    recorded = (record or {}).get("ids", {}).get("roi_size")
    return [int(s) for s in (recorded or roi_size)]


def checkpoint_file(ckpt_path: str | os.PathLike) -> Path:
    """``ckpt_path`` if it is a non-empty file; else :class:`RunError` naming it and the way out."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}: train first (make train), or pass --run_dir (or --ckpt_path) "
                       "pointing at a run's models/model.pt")
    if path.stat().st_size == 0:
        raise RunError(f"{path} is empty (0 bytes): a copy or a disk that failed; use {path.parent / 'model_last.pt'} "
                       "(--ckpt_path) or retrain with --overwrite true")
    return path


def load_weights(network: torch.nn.Module, ckpt_path: str | os.PathLike, *, device: str | torch.device = "cpu",
                 run_dir: str | os.PathLike | None = None) -> torch.nn.Module:
    """Load a plain ``state_dict`` (``torch.load(..., weights_only=True)``) into ``network``, or refuse clearly.

    An ensemble network (``networks.<i>.`` keys) takes the combined file of
    :func:`pipeline.ensemble.write_ensemble_checkpoint`.

    Raises:
        RunError: the file is missing, empty, truncated or not a checkpoint; or it does not fit the network
            (the differing ids of the run record named, or the first mismatching tensors).
    """
    path = checkpoint_file(ckpt_path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, anything torch cannot read safely
        raise RunError(f"{path} cannot be read as a checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                       f"use {path.parent / 'model_last.pt'} (--ckpt_path) or retrain with --overwrite true") from None
    if isinstance(state, Mapping) and "model" in state and not any(k.endswith(".weight") for k in state):
        state = state["model"]  # checkpoint.pt: the full training state
    target = network.module if hasattr(network, "module") else network
    own = target.state_dict()
    if not isinstance(state, Mapping):
        raise RunError(f"{path} holds a {type(state).__name__}, not a state_dict; pass a model.pt written by training")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        record = read_record(run_dir) if run_dir else None
        hint = ""
        if record and "network" in record:
            hint = f" (the run's record {Path(run_dir) / RUN_RECORD}: network {record['network'].get('_target_')})"
        first = ""
        if shapes:
            k = shapes[0]
            first = f"{k}: checkpoint {tuple(state[k].shape)}, network {tuple(own[k].shape)}"
        raise RunError(
            f"{path} does not fit the network{hint}: {len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(shapes)} differently shaped tensor(s){', e.g. ' + first if first else ''}; it was trained with "
            "other network ids: run inference with --run_dir of that run (its run.json gives the network), or pass "
            "the same network overlay and ids (demo.yaml, segresnet.yaml, unet_channels, ...) as in training")
    target.load_state_dict(state)
    return network


def model_id(ckpt_path: str | os.PathLike, **settings: object) -> str | None:
    """What identifies the writer of a segmentation: the checkpoint's SHA-256 and the inference settings that
    change the output (TTA, post-processing, window, label scheme), hashed to 16 hex digits.

    None when there is no usable checkpoint file: nothing can be segmented then, and :func:`load_weights` (run
    first by the bundle's ``initialize``) says why.
    """
    path = Path(ckpt_path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    digest = _sha256(path)
    text = json.dumps({"checkpoint": digest, **{k: _plain(v) for k, v in sorted(settings.items())}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _moved_overlay(path: str) -> str:
    """``path`` of a run recorded before the overlays moved into ``configs/variants/`` and ``configs/networks/``
    (``bundle/configs/fast.yaml`` -> ``bundle/configs/variants/fast.yaml``); any other path as it is."""
    from pipeline.bundle import NETWORKS, VARIANTS

    p = Path(path)
    moved = {Path(rel).name: rel for rel in [*VARIANTS.values(), *filter(None, NETWORKS.values())]}
    if p.name in moved and p.parent.name == "configs" and not p.exists():
        return str(p.parent / moved[p.name])
    return path


def next_command(run_dir: str | os.PathLike) -> str:
    """The inference command for a finished run: its config files with ``train.yaml`` -> ``inference.yaml`` (and
    without the multi-GPU overlay), ``--run_dir`` and its dataset; the network comes from ``run.json``."""
    record = read_record(run_dir) or {}
    files = []
    for f in record.get("config_files") or ["bundle/configs/common.yaml", "bundle/configs/train.yaml"]:
        f = _moved_overlay(f)
        name = Path(f).name
        if name == "multi_gpu_train.yaml":
            continue
        files.append(str(Path(f).with_name("inference.yaml")) if name == "train.yaml" else f)
    ids = record.get("ids", {})
    datalist = ids.get("datalist") or (str(Path(run_dir) / "datalist.json") if record.get("datalist_written") else None)
    configs = "[" + ",".join(f"'{f}'" for f in files) + "]"
    where = (f"--datalist {datalist} --infer_fold {ids.get('fold', 0)}" if datalist
             else f"--dataset_dir {ids.get('dataset_dir') or 'DATA'}")
    return f'python -m monai.bundle run inference --config_file "{configs}" --run_dir {run_dir} {where}'


# ------------------------------------------------------------------------------------------------------------
# Early checks
# ------------------------------------------------------------------------------------------------------------


def _divisor(spec: Mapping) -> tuple[int, int, int] | None:
    """How much a network of ``spec`` down-samples along each axis (roi_size must be a multiple), or None."""
    name = str(spec.get("_target_", "")).rsplit(".", 1)[-1]
    if name in ("UNet", "DynUNet"):
        per_axis = [s if isinstance(s, (list, tuple)) else [s] * 3 for s in spec.get("strides") or []]
    elif name == "SegResNet":
        per_axis = [[2, 2, 2]] * (len(spec.get("blocks_down") or [1, 2, 2, 4]) - 1)
    else:
        return None
    out = [1, 1, 1]
    for s in per_axis:
        out = [o * int(v) for o, v in zip(out, s, strict=True)]
    return (out[0], out[1], out[2])


def _size_option(sizes: Sequence[int]) -> str:
    return "--roi_size [" + ",".join(str(s) for s in sizes) + "]"


def check_roi_size(network_factory: functools.partial, roi_size: Sequence[int],
                   run_dir: str | os.PathLike | None = None) -> list[int]:
    """Refuse a patch size the network cannot take, before anything runs; returns ``roi_size``.

    The network is ``network_factory``'s, or the one recorded in ``<run_dir>/run.json`` when there is one. Each
    axis must be a multiple of the network's total down-sampling (16 for the default UNet, 8 for SegResNet, 32 for
    the DynUNet overlay) and at least twice it (instance norm needs more than one voxel at the bottom).

    Raises:
        RunError: naming the network, its down-sampling and the nearest valid sizes.
    """
    record = read_record(run_dir) if run_dir else None
    spec = (record or {}).get("network") or network_spec(network_factory)
    divisor = _divisor(spec)
    sizes = [int(s) for s in roi_size]
    if divisor is None:
        return sizes
    if any(s % d or s < 2 * d for s, d in zip(sizes, divisor, strict=True)):
        lower = tuple(max(2 * d, (s // d) * d) for s, d in zip(sizes, divisor, strict=True))
        upper = tuple(max(2 * d, -(-s // d) * d) for s, d in zip(sizes, divisor, strict=True))
        options = " or ".join(_size_option(o) for o in dict.fromkeys((lower, upper)))
        name = str(spec["_target_"]).rsplit(".", 1)[-1]
        raise RunError(f"roi_size {sizes} does not fit {name}: each axis must be a multiple of its down-sampling "
                       f"{list(divisor)} and at least twice it; nearest valid: {options}")
    return sizes


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
    return atomic_write_text(Path(run_dir) / "metadata.json", json.dumps(out, indent=2))
