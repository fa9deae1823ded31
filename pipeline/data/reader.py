"""The NIfTI reader of the bundle's ``LoadImaged``: MONAI's ``NibabelReader``, safe to share between threads.

MONAI 1.6.1's ``NibabelReader.read`` keeps the files it was given on the instance (``self.filenames``) and
``get_data`` zips the loaded images with them. One ``LoadImaged`` (and so one reader) serves every thread of a
``CacheDataset`` fill: when another thread reads a case's label (one file) between this thread's ``read`` of the
four contrasts and its ``get_data``, the zip stops after one image and the case is cached as a ``(1, H, W, D)``
image of its first contrast. `NiftiReader` keeps those files per thread (docs/recipe.md, "A case cached with one
channel").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from monai.data import NibabelReader


class NiftiReader(NibabelReader):
    """``NibabelReader`` whose files of the last ``read`` are kept per thread, so that threads sharing one reader
    each stack their own case: ``read(files)`` then ``get_data(images)`` -> ``(C, H, W, D)`` for ``C`` files
    (``LoadImaged(ensure_channel_first=True)``), as MONAI's reader does in one thread."""

    def _files_by_thread(self) -> dict[int, Sequence[str]]:
        """Thread id -> files of its last ``read`` (created on first use: an unpickled copy has it too)."""
        return self.__dict__.setdefault("_files", {})

    @property
    def filenames(self) -> Sequence[str]:
        """The files of this thread's last ``read`` (MONAI's ``get_data`` zips the images with them)."""
        return self._files_by_thread().get(threading.get_ident(), ())

    @filenames.setter
    def filenames(self, value: Sequence[str]) -> None:
        self._files_by_thread()[threading.get_ident()] = value

    def get_data(self, img: object) -> tuple:
        """MONAI's ``get_data`` on this thread's files; forgets them afterwards (a pool's threads come and go)."""
        try:
            return super().get_data(img)
        finally:
            self._files_by_thread().pop(threading.get_ident(), None)
