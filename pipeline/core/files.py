"""Writing files safely: whole files only, the user's permissions, never over an input, one writer per folder.

`atomic_write` fills a temporary file beside the target and renames it (mode ``0666 & ~umask``, as ``open()``);
`check_output_location` refuses an output folder among the inputs; `FolderLock` keeps one writer per folder (a lock
left by a killed process is taken over; an empty folder it made goes with it); `hold_folder` holds a command's output
folders until the command (`holding`) or the process ends; `gzip_is_whole` checks a ``.gz`` to its end.
"""

from __future__ import annotations

import atexit
import errno
import functools
import gzip
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

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
    suffix = _temporary_suffix(path.name)
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


_BACKUPS = itertools.count()


def _set_aside(path: Path) -> Path:
    """A second name for ``path``'s file beside it (``.<name>.replaced~<pid>-<n>``, unique in this process and
    never an existing file): a hard link, or a copy where the file system has none. A copy left by a process that
    died inside its block (killed: it could not put it back) is named in a warning: it may be the only copy of
    the file that process was replacing."""
    for left in path.parent.glob(f".{path.name}.replaced~*"):
        pid = left.name.rsplit("~", 1)[-1].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)) and _same_file(left, path):  # nothing but a second name
            left.unlink(missing_ok=True)
        elif pid.isdigit() and not _pid_alive(int(pid)):
            logger.warning("%s was left by process %s, which died while replacing %s: it holds the file as it was "
                           "before; move it back over %s if that one is not whole, else delete it", left, pid,
                           path.name, path)
    while True:
        backup = path.with_name(f".{path.name}.replaced~{os.getpid()}-{next(_BACKUPS)}")
        try:
            os.link(path, backup)
            return backup
        except FileExistsError:
            continue
        except OSError:  # no hard links here (some network and FUSE file systems): a copy
            if backup.exists():
                continue
            shutil.copy2(path, backup)
            return backup


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (hard links) or hold the same bytes."""
    try:
        return os.path.samefile(a, b) or (a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b))
    except OSError:
        return False


@contextmanager
def replaced_on_success(files: Iterable[str | os.PathLike], restore: Iterable[str | os.PathLike] = (),
                        folders: Iterable[str | os.PathLike] = ()) -> Iterator[None]:
    """The files of an earlier result that the block replaces (``--overwrite``), kept until the new one is whole.

    ``files``: those the block did not write again are deleted when it ends without an error. ``restore``: files the
    block may write again or delete (a comparison's per-algorithm evaluations, each replaced by an evaluation of its
    own), never deleted here. When the block raises (a prediction on another grid, a label outside the scheme, at
    the third algorithm of a comparison), every file of both lists is put back as it was, also one the block had
    already written over or deleted: each is set aside under a second name first (`_set_aside`: a hard link), so the
    old result is lost only to a new one; and the files the block created under ``folders`` are deleted, so no new
    file is left beside the old ones. A file counts as written again when its inode, size or modification time
    changed (every writer here replaces a file by renaming a new one over it, `atomic_write`). Blocks may nest (an
    evaluation's inside a comparison's): each sets its own copies aside.
    """
    def stamp(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def listing() -> set[Path]:  # (a folder's lock is its holder's, never a file of the block)
        return {f for folder in map(Path, folders) if folder.is_dir() for f in folder.rglob("*")
                if f.is_file() and f.name != FolderLock.NAME}

    replaced = [Path(f) for f in files]
    before = {path: stamp(path) for path in replaced}
    backups: dict[Path, Path] = {}
    present = listing()
    try:
        for path in dict.fromkeys([*replaced, *map(Path, restore)]):
            if path.is_file():
                backups[path] = _set_aside(path)
                present.add(backups[path])
        yield
    except BaseException:
        for created in listing() - present:  # new files of the failed block: not kept beside the old result
            created.unlink(missing_ok=True)
        for path, backup in backups.items():  # each on its own: one that cannot be put back stops no other
            try:
                if path.exists() and os.path.samefile(path, backup):  # untouched (rename() of one file's two
                    backup.unlink()                                   # names does nothing, POSIX)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(backup, path)
            except OSError as e:
                logger.error("%s could not be put back from %s (%s): the old file is there", path, backup, e)
        raise
    for path, was in before.items():
        if was is not None and stamp(path) == was:
            path.unlink(missing_ok=True)
    for backup in backups.values():
        backup.unlink(missing_ok=True)


def read_json(path: str | os.PathLike) -> object:
    """The JSON content of the file ``path`` (UTF-8), the one reader of the package's and the user's JSON files.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not JSON, not UTF-8, or nested too deeply for Python's decoder (a RecursionError turned
            into what every caller already refuses in one line).
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be read") from None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _temporary_suffix(name: str) -> str:
    """The suffix `atomic_write` keeps on the temporary file of ``name`` (``.nii.gz``, ``.pt``, ``.json``)."""
    path = Path(name)
    return "".join(path.suffixes[-2:]) if name.endswith(".nii.gz") else path.suffix


#: A temporary file of `atomic_write`: ``.<name>.<8 characters of mkstemp>.tmp<name's suffix>``.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(\.[^.]+){0,2})")


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `atomic_write` leaves in ``folder`` when its process is killed mid-write (named
    as it names them, nothing else); call it only while holding the folder (no live writer has one open). Returns
    the files deleted."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        match = _TEMPORARY.fullmatch(tmp.name)
        if match and match["suffix"] == _temporary_suffix(match["name"]) and tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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
    The lock is released by `release`, and at the latest when the process exits; the folders `acquire` made
    (the folder and missing parents) go with it if nothing was written into them (a refused or failed command
    leaves no empty output folder behind).
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike, *, what: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.what = what
        self.held = False
        self.made: list[Path] = []  # the folders acquire made, deepest first

    def _owner(self) -> dict:
        """The lock's holder; a lock file that is not such a record (emptied, edited) holds nothing."""
        try:
            owner = read_json(self.path)
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(owner, dict):
            return {}
        try:
            pid = int(owner.get("pid", -1) or -1)
        except (TypeError, ValueError):
            return {}
        return {**owner, "pid": pid} if isinstance(owner.get("host", ""), (str, type(None))) else {}

    @staticmethod
    def _link_exclusive(source: Path, target: Path) -> bool:
        """Give ``source``'s content the name ``target`` unless ``target`` exists: a hard link, so that ``target``
        appears whole; on a file system without hard links (vfat, some network mounts), an exclusive creation
        written at once (a reader may then see it empty for a moment: `acquire` waits on a fresh empty lock).
        True when ``target`` was made."""
        try:
            os.link(source, target)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EACCES):
                raise
        content = source.read_bytes()
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return True

    def _publish(self, me: dict) -> bool:
        """Create the lock file whole, holding ``me``: written to a temporary file, then linked to ``.lock``
        (`_link_exclusive`), which fails if it exists. Another process never reads a half-written lock (it would
        take one for a dead holder's and take it over). True when this process made the lock, False when one was
        there.

        Raises:
            FileNotFoundError: the folder went (another process's release removed it, empty).
        """
        fd, tmp = tempfile.mkstemp(prefix=".lock.", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            os.chmod(tmp, file_mode())
            return self._link_exclusive(Path(tmp), self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _take_over(self, owner: dict) -> None:
        """Remove the lock of a process that no longer runs, unless it changed since it was read as ``owner``:
        the file is renamed aside first (one process can), then checked; another process's fresh lock, renamed by
        a process that read the old one, is put back. (Left open: a third process that publishes in the moment
        between the two; three processes starting at once on a dead holder's lock.)"""
        aside = self.folder / f".lock.stale.{os.getpid()}"
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:  # another process took it over first
            return
        try:
            moved = FolderLock(self.folder, what=self.what)
            moved.path = aside
            if moved._owner() != owner:  # not the dead holder's lock: a live process's, taken over a moment ago
                self._link_exclusive(aside, self.path)
        finally:
            aside.unlink(missing_ok=True)

    #: Seconds an empty lock file counts as one being written (`_link_exclusive` without hard links), not a dead
    #: holder's.
    FRESH_S = 2.0

    def acquire(self) -> FolderLock:
        """Take the lock, or raise `UserError` if another live process holds it."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}
        made: list[Path] = []
        tries, first_empty = 0, 0.0
        while tries < 5:
            missing = [p for p in (self.folder.absolute(), *self.folder.absolute().parents) if not p.exists()]
            made = sorted(set(made) | set(missing), key=lambda p: -len(p.parts))  # deepest first
            try:
                self.folder.mkdir(parents=True, exist_ok=True)  # (a file in the way: FileExistsError, to the caller)
                published = self._publish(me)
            except FileNotFoundError:  # another process's release removed the (empty) folder it had made: again
                tries += 1
                continue
            if published:
                self.held, self.made = True, made
                _LIVE.append(self)  # released at the latest when the process exits (release_held_folders)
                return self
            owner = self._owner()
            if not owner and self._fresh():  # being written by another process: read it again in a moment, for
                first_empty = first_empty or time.monotonic()  # at most FRESH_S in all (a clock skewed ahead)
                if time.monotonic() - first_empty < self.FRESH_S:
                    time.sleep(0.05)
                    continue
            tries += 1
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
            self._take_over(owner)
        raise UserError(f"could not lock {self.folder}: {self.path} keeps reappearing; is another run starting?")

    def _fresh(self) -> bool:
        """Whether the lock file was made less than `FRESH_S` seconds ago."""
        try:
            return time.time() - self.path.stat().st_mtime < self.FRESH_S
        except FileNotFoundError:
            return False

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
        """Remove the lock if this process holds it, and the folders it made if they stayed empty."""
        if self.held and self.mine():
            self.path.unlink(missing_ok=True)
            for folder in self.made:
                try:
                    folder.rmdir()  # only an empty one
                except OSError:
                    break
        self.held, self.made = False, []
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


#: The locks this process took (`FolderLock.acquire`) and has not released, in the order taken.
_LIVE: list[FolderLock] = []

#: The folders this process holds (`hold_folder`), by resolved path.
_HELD: dict[str, FolderLock] = {}


#: How many `holding` scopes are open: the folders held inside the outermost are released when it ends.
_SCOPES = 0

P = ParamSpec("P")
R = TypeVar("R")


def hold_folder(folder: str | os.PathLike, *, what: str) -> FolderLock:
    """Lock ``folder`` (`FolderLock`, made if missing) for this process until the outermost `holding` scope ends
    (a command of ``python -m pipeline``; a function such as ``evaluate()`` called from Python), or the process
    ends (a ``monai.bundle run``), or `release_held_folders`: every command that writes a folder of outputs
    (training, evaluation, comparison, pictures) holds it first, so that a second process writing the same folder
    is refused instead of interleaving its files. A second call for the same folder in this process is the same
    lock (an evaluation draws its own pictures).

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
    """Release every lock this process holds, the last taken first (an evaluation's folder inside a comparison's
    goes before it, so that an empty one made for it is removed before its parent is tried): what the end of the
    process does (registered with `atexit`; a forked test CLI calls it before ``os._exit``)."""
    for lock in reversed(list(_LIVE)):
        lock.release()
    _LIVE.clear()
    _HELD.clear()


atexit.register(release_held_folders)


@contextmanager
def holding_scope() -> Iterator[None]:
    """The folders held (`hold_folder`) inside this scope, when it is the outermost one, are released when it
    ends; inside another scope they stay held until that one ends (a command that evaluates, then draws and writes
    its report, holds its folder throughout). Folders held before the scope began are not touched."""
    global _SCOPES
    before = set(_HELD)
    _SCOPES += 1
    try:
        yield
    finally:
        _SCOPES -= 1
        if _SCOPES == 0:
            for key in reversed([k for k in _HELD if k not in before]):  # the last taken first
                _HELD.pop(key).release()


def holding(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run in a `holding_scope`: the output folders it holds are free again when it returns or raises,
    unless its caller's scope holds on to them."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with holding_scope():
            return fn(*args, **kwargs)

    return wrapper


_UNTIL_EXIT = False


def hold_until_exit() -> None:
    """From now on, held folders stay held until the process ends (``python -m monai.bundle run``: its config's
    steps evaluate, draw and report one after another; the exit releases them)."""
    global _SCOPES, _UNTIL_EXIT
    if not _UNTIL_EXIT:
        _SCOPES, _UNTIL_EXIT = _SCOPES + 1, True


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
            text = f.read()
        reader = csv.DictReader(text.splitlines(keepends=True))
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
    short = next((i for i, row in enumerate(rows, 2) if None in row.values() or None in row), None)
    if short is not None or (rows and not text.endswith(("\n", "\r"))):  # every table written here ends a line
        where = (f"row {short} has not the {len(header)} fields of its header" if short
                 else "it ends inside its last row")
        raise UserError(f"{path} is cut short ({where}): an interrupted copy or write? Restore it whole, or pass "
                        f"{what}")
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
