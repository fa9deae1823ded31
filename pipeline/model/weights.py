"""Model weights: written whole (`atomic_torch_save`), loaded with ``weights_only=True`` or refused in one
line (`load_weights`), and identified by their hash and the settings that change the output (`model_id`)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write, file_sha256
from pipeline.data.labels import NNUNET_PREFIX, Description
from pipeline.model.network import is_training_only, plain_value


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that never leaves a half-written ``path`` (`pipeline.core.files.atomic_write`).

    Saved through an open file, so the archive's inner folder is ``archive`` and not the temporary file's random
    name (torch 2.13 names it after a path it is given): the same object gives the same bytes, and so the same
    `model_id` (a fold ensemble's checkpoint is rewritten by every run of it)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)


class WeightsError(UserError):
    """A checkpoint that cannot be used; the message names the file and the way out."""



def checkpoint_file(ckpt_path: str | os.PathLike, *, fix: str | None = None) -> Path:
    """``ckpt_path`` if it is a non-empty file; else `WeightsError` naming it and the way out (``fix``)."""
    path = Path(str(ckpt_path))
    if not path.is_file():
        raise WeightsError(f"no checkpoint at {path}: " + (fix or "train first (make train), or pass --run_dir (or "
                                                             "--ckpt_path) pointing at a run's models/model.pt"))
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): a copy or a disk that failed; " + (
            fix or f"use {path.parent / 'model_last.pt'} (--ckpt_path) or retrain with --overwrite true"))
    return path


#: ``{real path: SHA-256 of the bytes read_state loaded from it}`` in this process: a segmentation's `model_id`
#: names the weights that made it, also where training replaced the file after they were read.
_LOADED: dict[str, str] = {}


def loaded_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the checkpoint bytes this process loaded from ``path`` (`read_state`), else of the file now."""
    return _LOADED.get(os.path.realpath(path)) or file_sha256(path)


def read_state(path: str | os.PathLike, *, device: str | torch.device = "cpu", fix: str) -> object:
    """``torch.load(path, weights_only=True)``, or a `WeightsError` naming the file and ``fix`` when it is missing,
    empty, truncated or not a checkpoint (a pickle with code included)."""
    path = checkpoint_file(path, fix=fix)
    data = path.read_bytes()  # once: the bytes loaded are the bytes `model_id` names (`_LOADED`)
    _LOADED[os.path.realpath(path)] = hashlib.sha256(data).hexdigest()
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, anything torch cannot read safely
        first = str(e).splitlines()[0] if str(e) else ""
        first = first if len(first) <= 200 else first[:200].rsplit(" ", 1)[0] + " ..."  # a word cut is no message
        raise WeightsError(f"{path} cannot be read as a checkpoint ({type(e).__name__}: {first}); {fix}") from None


def load_weights(network: torch.nn.Module, ckpt_path: str | os.PathLike, *, device: str | torch.device = "cpu",
                 record: Mapping | None = None) -> torch.nn.Module:
    """Load a plain ``state_dict`` (``torch.load(..., weights_only=True)``) into ``network``, or refuse clearly
    (`load_state`).

    Raises:
        WeightsError: the file is missing, empty, truncated or not a checkpoint; or it does not fit the network.
    """
    path = checkpoint_file(ckpt_path)
    state = read_state(path, device=device, fix=f"use {path.parent / 'model_last.pt'} (--ckpt_path) or retrain with "
                                                "--overwrite true")
    if isinstance(state, Mapping) and "model" in state and not any(k.endswith(".weight") for k in state):
        average = state.get("weight_average")  # checkpoint.pt: the full training state
        state = state["model"]
        if isinstance(average, Mapping) and average.get("shadow") and isinstance(state, Mapping):
            # trained with ema_decay: the average, as model.pt and model_last.pt hold it (what validation scored)
            state = with_average(state, average["shadow"])
    return load_state(network, state, path, record=record)


def unwrapped(network: object) -> object:
    """The module a wrapper trains (``DistributedDataParallel``'s ``.module``), else ``network`` itself: whose
    ``state_dict`` is saved, loaded and averaged."""
    return network.module if isinstance(network, torch.nn.Module) and hasattr(network, "module") else network


def with_average(state: Mapping[str, torch.Tensor], average: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (a network's ``state_dict``) with the tensors of a weight average (``ema_decay``;
    `pipeline.training.averaging.WeightAverage`'s float32 shadow) in place of its own, in its dtypes."""
    return {k: average[k].to(v.dtype) if k in average else v for k, v in state.items()}


def load_state(network: torch.nn.Module, state: object, source: object, *, record: Mapping | None = None
               ) -> torch.nn.Module:
    """Load ``state`` (read from ``source``, named in refusals) into ``network``, or refuse clearly.

    An ensemble network (``networks.<i>.`` keys) takes the folds' states under those prefixes
    (`pipeline.inference.ensemble.load_ensemble`). Tensors of training-only modules the network lacks (DynUNet's
    deep-supervision heads, `pipeline.model.network.inference_spec`) are left out.

    Raises:
        WeightsError: ``state`` is no state_dict, or it does not fit the network (the differing ids of the run
            record named, or the first mismatching tensors).
    """
    path = source
    target = unwrapped(network)
    own = target.state_dict()
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state_dict; pass a model.pt written by "
                           "training")
    state = {k: v for k, v in state.items() if k in own or not is_training_only(k)}  # heads of training only
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        hint = ""
        if record and "network" in record:
            hint = f" (its run.json: network {record['network'].get('_target_')})"
        first = ""
        if shapes:
            k = shapes[0]
            first = f"{k}: checkpoint {tuple(state[k].shape)}, network {tuple(own[k].shape)}"
        raise WeightsError(
            f"{path} does not fit the network{hint}: {len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(shapes)} differently shaped tensor(s){', e.g. ' + first if first else ''}; it was trained with "
            "other network ids: run inference with --run_dir of that run (its run.json gives the network), or pass "
            "the same network overlay and ids (demo.yaml, segresnet.yaml, unet_channels, ...) as in training")
    target.load_state_dict(state)
    return network


def model_id(ckpt_path: str | os.PathLike | Sequence[str | os.PathLike], **settings: object) -> str | None:
    """What identifies the writer of a segmentation: the checkpoint's SHA-256 (an ensemble's: its folds' files, in
    order; of the bytes this process loaded, `loaded_sha256`: training may replace model.pt in between) and the
    inference settings that change the output (TTA, post-processing, window and its blending, grid, precision, the
    description's labels), each by its meaning (`_canonical`: ``0.5`` and ``"0.5"`` are one value), hashed to 16 hex
    digits.

    None when a checkpoint file is missing or empty: nothing can be segmented then, and `load_weights` (run first
    by the bundle's ``initialize``) says why.
    """
    paths = [Path(p) for p in ckpt_path] if isinstance(ckpt_path, (list, tuple)) else [Path(ckpt_path)]
    if not paths or any(not p.is_file() or p.stat().st_size == 0 for p in paths):
        return None
    digest = loaded_sha256(paths[0]) if len(paths) == 1 else [loaded_sha256(p) for p in paths]
    values = {k: _canonical(plain_value(v)) for k, v in sorted(settings.items())}
    text = json.dumps({"checkpoint": digest, **values}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def numbering_settings(scheme: str, description: Description) -> dict:
    """The label numbering a segmentation is written in, as `model_id` hashes it: the scheme's name and its labels
    (nnU-Net's ``dataset.json`` vocabulary). A dataset.json's own scheme (``nnunet:<path>``) counts by its labels
    and regions only: not where the file lies (a copied dataset) nor how it lists the channels, which inference
    matches by name (the same model writes the same segmentation)."""
    labels = description.to_dataset_json()
    if str(scheme).startswith(NNUNET_PREFIX):
        return {"scheme": "nnunet", "labels": {k: v for k, v in labels.items() if k != "channel_names"}}
    return {"scheme": scheme, "labels": labels}


def _canonical(value: object) -> object:
    """A setting as its meaning, not its spelling: ``0``, ``0.0`` and ``"0"`` are one number, ``"true"`` is True
    (the CLI hands values over as text or numbers)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return text == "true"
        try:
            return float(text)
        except ValueError:
            return value
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value
