"""Writing files safely: whole files only, the user's permissions, never over an input, one writer per folder.

`atomic_write` fills a temporary file beside the target and renames it (mode ``0666 & ~umask``, as ``open()``);
`check_output_location` refuses an output folder among the inputs; `FolderLock` keeps one writer per folder (a lock
left by a killed process is taken over); `gzip_is_whole` checks a ``.gz`` to its end.
"""

from __future__ import annotations

import atexit
import errno
import gzip
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.core.errors import UserError

logger = logging.getLogger(__name__)

_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` gives a new file in this process."""
    with _UMASK_LOCK:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (a power cut after it cannot bring the old file back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, durable: bool = True) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps ``path``'s suffixes (``.nii.gz``, ``.pt``), so writers that choose the format
    from the name (nibabel) write the right one. With ``durable`` the data and the rename are fsynced.
    The file gets `file_mode`. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as e:  # a writer that hides the disk's error (torch: "[enforce fail ...] file write failed")
        tmp.unlink(missing_ok=True)
        if _disk_full(path.parent):
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


#: Free bytes below which a failed write is taken for a full disk.
DISK_FULL_BYTES = 1 << 20


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < DISK_FULL_BYTES
    except OSError:
        return False


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """`atomic_write` of a text file (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_temporaries(folder: str | os.PathLike) -> None:
    """Delete the temporary files `atomic_write` leaves when its process is killed mid-write."""
    for tmp in Path(folder).glob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def gzip_is_whole(path: str | os.PathLike, chunk: int = 1 << 22) -> bool:
    """Whether a ``.gz`` file decompresses completely (gzip checks its CRC and length at the end)."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(chunk):
                pass
    except (OSError, EOFError, zlib.error):
        return False
    return True


# ------------------------------------------------------------------------------------------------------------
# One writer per folder
# ------------------------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class FolderLock:
    """``<folder>/.lock``, held by one process while it writes into ``folder``.

    The file holds the process id and host name. A second process refuses with a line naming the holder;
    a lock whose process no longer runs on this host (killed) is taken over with a warning. A lock from
    another host cannot be checked: the message says to delete it if no run is going on there.
    The lock is released by `release`, and at the latest when the process exits.
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike, *, what: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.what = what
        self.held = False

    def _owner(self) -> dict:
        """The lock's holder; a lock file that is not such a record (emptied, edited) holds nothing."""
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(owner, dict):
            return {}
        try:
            pid = int(owner.get("pid", -1) or -1)
        except (TypeError, ValueError):
            return {}
        return {**owner, "pid": pid} if isinstance(owner.get("host", ""), (str, type(None))) else {}

    def acquire(self) -> FolderLock:
        """Take the lock, or raise `UserError` if another live process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
            except FileExistsError:
                owner = self._owner()
                pid, host = int(owner.get("pid", -1) or -1), owner.get("host")
                if pid == os.getpid() and host == me["host"]:
                    self.held = True
                    return self
                if host == me["host"] and pid > 0 and _pid_alive(pid):
                    raise UserError(
                        f"{self.folder} is being written by another process (pid {pid}, {owner.get('what', '?')}): "
                        f"wait for it to finish, or pass another folder; if no such process runs, delete {self.path}"
                    ) from None
                if host not in (None, me["host"]):
                    raise UserError(
                        f"{self.folder} is locked by a process on host {host} (pid {pid}, {owner.get('what', '?')}): "
                        f"wait for it to finish; if no run is going on there, delete {self.path}"
                    ) from None
                logger.warning("%s: taking over the lock of process %s, which is no longer running (killed?)",
                               self.folder, pid)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            atexit.register(self.release)
            return self
        raise UserError(f"could not lock {self.folder}: {self.path} keeps reappearing; is another run starting?")

    def holder(self) -> str | None:
        """Who else holds the lock now (``pid 123 on host h, training``), or None: no lock, this process's, or one
        whose process no longer runs on this host (a killed run: `acquire` would take it over)."""
        owner = self._owner()
        if not owner:
            return None
        pid, host = int(owner.get("pid", -1) or -1), owner.get("host")
        here = socket.gethostname()
        if host == here and (pid == os.getpid() or pid <= 0 or not _pid_alive(pid)):
            return None
        return f"pid {pid} on host {host}, {owner.get('what', '?')}"

    def mine(self) -> bool:
        """Whether the lock file names this process (on this host)."""
        owner = self._owner()
        return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held and self.mine():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


#: The folders this process holds (`hold_folder`), by resolved path.
_HELD: dict[str, FolderLock] = {}


def hold_folder(folder: str | os.PathLike, *, what: str) -> FolderLock:
    """Lock ``folder`` (`FolderLock`, made if missing) for this process until it ends or `release_held_folders`:
    every command that writes a folder of outputs (training, evaluation, comparison, pictures) holds it first, so
    that a second process writing the same folder is refused instead of interleaving its files. A second call for
    the same folder in this process is the same lock (an evaluation draws its own pictures).

    Raises:
        UserError: another live process holds the folder (naming it and what it does).
    """
    key = str(Path(folder).expanduser().resolve())
    lock = _HELD.get(key)
    if lock is None or not lock.held or not lock.mine():  # (another lock of this folder released its file)
        lock = FolderLock(folder, what=what).acquire()
        _HELD[key] = lock
    return lock


def release_held_folders() -> None:
    """Release every folder this process holds (as the end of the process would)."""
    for lock in _HELD.values():
        lock.release()
    _HELD.clear()


def read_table(path: str | os.PathLike, columns: Sequence[str], what: str) -> list[dict[str, str]]:
    """The rows of the CSV file ``path``, which must hold ``columns``: ``what`` names the table expected and what
    writes it (``an evaluation's metrics.csv (python -m pipeline evaluate)``), for the refusal.

    Raises:
        UserError: no such file, not a CSV table, or a column missing (the file, the columns and ``what`` named).
    """
    import csv

    from pipeline.core.errors import UserError

    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise UserError(f"no {path}: pass {what}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path} cannot be read as a CSV table ({e}): pass {what}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(f"{path} is not {what}: it has no column {', '.join(missing)} (its columns: "
                        f"{', '.join(header[:8]) or 'none'}{' ...' if len(header) > 8 else ''})")
    return rows


def column_numbers(rows: Sequence[dict[str, str]], key: str, path: str | os.PathLike) -> list[float]:
    """The numbers of column ``key`` (an empty cell is NaN).

    Raises:
        UserError: a cell that is no number (the file, the column and the row named).
    """
    from pipeline.core.errors import UserError

    out = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        cell = row.get(key)
        try:
            out.append(float(cell) if cell not in (None, "") else float("nan"))
        except ValueError:
            raise UserError(f"{path}, line {i}: column {key} holds {cell!r}, not a number; write the table again "
                            "with the command that made it") from None
    return out
