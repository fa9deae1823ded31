"""The training and validation datasets: MONAI's ``CacheDataset`` in memory, or ``PersistentDataset`` on disk
with a key that covers the files and the transforms' settings."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import types
from collections.abc import Sequence
from copy import deepcopy

import numpy as np

from pipeline.core.nifti import NIFTI_EXTENSIONS


def _describe(obj: object, depth: int = 0) -> object:
    """A JSON-able description of a transform's settings (class names and plain attribute values)."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (list, tuple)):
        return [_describe(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v, depth + 1) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, type):
        return obj.__qualname__
    if hasattr(obj, "tolist") and hasattr(obj, "dtype") and hasattr(obj, "shape"):  # NumPy/torch scalars and arrays
        n = int(np.prod(obj.shape)) if obj.shape else 1
        return obj.tolist() if n <= 64 else f"{type(obj).__name__}{tuple(obj.shape)}:{obj.dtype}"
    if isinstance(obj, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)):
        return getattr(obj, "__qualname__", type(obj).__qualname__)
    if depth < 6 and hasattr(obj, "__dict__"):
        attrs = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
        return {"class": type(obj).__qualname__, **{k: _describe(v, depth + 1) for k, v in sorted(attrs.items())}}
    return type(obj).__qualname__


def transform_hash(transforms: object) -> bytes:
    """Hash of the class and settings of each transform (a ``PersistentDataset`` ``hash_transform``).

    MONAI's own choices fall back to the class names only, so a changed ``roi_size`` would reuse a stale cache
    (a MONAI 1.6.1 workaround, `pipeline.monai_workarounds`).
    """
    text = json.dumps(_describe(transforms), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16].encode()


def item_hash(item: dict) -> bytes:
    """Cache key of a datalist item: the item plus the size and modification time of each of its files,
    so that a file replaced on disk (a re-downloaded case, say) is read and preprocessed again."""
    stats = []
    for key in sorted(item):
        values = item[key] if isinstance(item[key], (list, tuple)) else [item[key]]
        for v in values:
            if isinstance(v, str) and v.endswith(NIFTI_EXTENSIONS):
                try:
                    st = os.stat(v)
                    stats.append([v, st.st_size, st.st_mtime_ns])
                except OSError:
                    stats.append([v, None, None])
    text = json.dumps([item, stats], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest().encode()


def cached_dataset(data: Sequence[dict], transform: object, cache_dir: str | os.PathLike | None = None,
                   cache_rate: float = 1.0, num_workers: int | None = 1) -> object:
    """The training/validation dataset: MONAI ``CacheDataset`` (in memory), or ``PersistentDataset`` on disk.

    With ``cache_dir`` empty, a ``CacheDataset`` keeps ``cache_rate`` of the preprocessed cases in memory for
    this run. With ``cache_dir`` set, the deterministic preprocessing of each case (everything before the
    first random transform) is written once to ``cache_dir/<hash>.pt`` and read back by every later epoch and
    run, so gzip is decoded once per case. The key covers the item, its files' size and modification time
    (`item_hash`) and the preprocessing settings (`transform_hash`): change either and the case is
    preprocessed again. Delete the folder to reclaim the space.
    """
    from monai.data import CacheDataset

    if cache_dir:
        return _atomic_persistent_dataset()(data=data, transform=transform, cache_dir=str(cache_dir),
                                            hash_func=item_hash, hash_transform=transform_hash)
    return CacheDataset(data=data, transform=transform, cache_rate=cache_rate, num_workers=num_workers)


def _atomic_persistent_dataset() -> type:
    """MONAI's ``PersistentDataset`` whose cache files are written beside their place and renamed (`atomic_write`),
    and whose unreadable files are computed again.

    MONAI 1.6.1 saves each file in the system's temporary folder and ``shutil.move``s it into ``cache_dir``: across
    file systems a copy, so a run killed meanwhile leaves a truncated ``<hash>.pt``; and it recomputes a corrupt file
    only when torch says "Invalid magic number", while a truncated zip says "failed finding central directory", so
    every later training failed on that case until the file was found and deleted.
    """
    import warnings
    from pickle import UnpicklingError

    import torch
    from monai.data import PersistentDataset
    from monai.utils import convert_to_tensor

    from pipeline.core.files import atomic_write

    class AtomicPersistentDataset(PersistentDataset):
        def _cachecheck(self, item_transformed: object) -> object:
            if self.cache_dir is None:
                return super()._cachecheck(item_transformed)
            hashfile = self.cache_dir / f"{self.hash_func(item_transformed).decode('utf-8')}{self.transform_hash}.pt"
            if hashfile.is_file():
                try:
                    return torch.load(hashfile, weights_only=self.weights_only)
                except PermissionError:
                    raise  # not readable by this user: the error names the file
                except (UnpicklingError, RuntimeError, EOFError, OSError) as e:  # a cut or foreign file
                    warnings.warn(f"unreadable cache file {hashfile} ({type(e).__name__}): computed again",
                                  stacklevel=2)
            item = self._pre_transform(deepcopy(item_transformed))  # keep the original hashed
            tensors = convert_to_tensor(item, convert_numeric=False, track_meta=self.track_meta)
            try:
                atomic_write(hashfile, lambda tmp: torch.save(tensors, tmp), durable=False)
            except PermissionError:  # a read-only or shared cache_dir: used as it is, as MONAI does (its issue 3613)
                pass
            return item

    return AtomicPersistentDataset
