"""Segmentations written in background threads, as nnU-Net's export pool does: the next case's network work runs
while the previous case is compressed and written.

gzip (zlib) and the file system release the GIL, so one or two threads overlap the writing with the sliding
window on a GPU and, partly, on a CPU. `BackgroundWriters` bounds the writes in flight (each holds a label volume,
``H x W x D`` uint8, or probabilities) so that a fast network cannot fill the memory, keeps the writes of one case
in submission order (probabilities before the segmentation that records them), and `wait` returns only when every
write has ended. ``threads=0`` writes in the calling thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from pipeline.core.config import as_int

T = TypeVar("T")


def default_threads() -> int:
    """Writer threads when the config says ``auto``: one per four CPU cores, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def writer_threads(value: object) -> int:
    """The ``writer_threads`` id: ``auto`` (`default_threads`), or a count >= 0 (0: write in the calling thread)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return default_threads()
    return as_int(value, "writer_threads", minimum=0)


class BackgroundWriters:
    """A pool of ``threads`` writer threads with at most ``max_pending`` writes submitted and not finished.

    Args:
        threads: worker threads; 0 runs each write at once in the caller.
        max_pending: writes in flight before `submit` blocks (default ``2 * threads``).
    """

    def __init__(self, threads: int = 1, max_pending: int | None = None) -> None:
        self.threads = int(threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="writer") if self.threads > 0 else None
        self._slots = threading.BoundedSemaphore(max_pending or max(1, 2 * self.threads))
        self._last: dict[str, Future] = {}   # the last write of each key (a case), for ordering
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    def submit(self, key: str, write: Callable[[], T], done: Callable[[T], None],
               failed: Callable[[BaseException], None]) -> Future | None:
        """Run ``write()`` after the earlier writes of ``key``, then ``done(result)``, or ``failed(error)`` if
        it raised. Both callbacks run in the writer thread, one at a time across threads."""
        def task(before: Future | None) -> None:
            if before is not None:
                before.exception()  # wait for the earlier write of this case; its failure is reported by itself
            try:
                result = write()
            except Exception as e:  # noqa: BLE001 - reported as the case's failure, the others go on (a stop -
                                    # SIGTERM, Ctrl-C - in the main thread's writing stops the run)
                with self._lock:
                    failed(e)
                return
            with self._lock:
                done(result)

        if self._pool is None:
            task(None)
            return None
        self._slots.acquire()
        with self._lock:
            before = self._last.get(key)
            future = self._pool.submit(task, before)
            self._last[key] = future
            self._pending.add(future)
        future.add_done_callback(self._release)
        return future

    def _release(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)
        self._slots.release()

    @property
    def lock(self) -> threading.Lock:
        """Held while a callback runs: take it to read what the callbacks write."""
        return self._lock

    def wait(self) -> None:
        """Return when every submitted write has ended (written or failed)."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                self._last.clear()
                return
            for future in pending:
                future.exception()

    def close(self) -> None:
        """`wait`, then stop the threads."""
        self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
