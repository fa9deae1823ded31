"""One output guard: nothing is written among the inputs, whatever the writer and however the inputs are reached.

An `OutputGuard` knows every input file of the data a command reads (images, labels, a datalist, predictions to
score) and the dataset folders they live in, by their resolved paths and their inodes, so that a symlinked "subset"
folder or a hardlink is recognised as the original. Every writer asks it first: `folder` for an output folder (it
may not be, hold or lie inside an input folder, nor hold an input file), `file` for an output file (it may not be an
input, by path or inode, nor lie in a dataset folder), `may_delete` before an ``--overwrite`` deletes anything.
Both also refuse a place inside any dataset, an input of the command or not: the guard is given that rule
(``datasets``, `pipeline.data.layouts.refuse_inside_dataset`, which knows the layouts' marks) when it is made, by
`pipeline.data.layouts.output_guard`, the one constructor the writers call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.core.config import as_path
from pipeline.core.errors import UserError, cli_ids
from pipeline.core.kinds import RUN_RECORD, RUN_WRITES, kinds_in

#: Sub-folders of a dataset that hold its files (MSD, nnU-Net): the dataset folder is their parent.
DATASET_SUBFOLDERS = ("imagesTr", "labelsTr", "imagesTs")
#: Sub-folders of a BraTS 2018 download that hold its case folders.
GRADE_FOLDERS = ("HGG", "LGG")


def _real(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


def dataset_root(file: Path) -> Path:
    """The dataset folder an input file belongs to: the parent of ``imagesTr/``-like folders, of a BraTS case folder
    (``<root>/<case>/<case>_t1.nii.gz``, and above 2018's ``HGG``/``LGG``), else the file's own folder."""
    parent = file.parent
    if parent.name in DATASET_SUBFOLDERS:
        return parent.parent
    if file.name.startswith(parent.name) and parent.name:
        root = parent.parent
        return root.parent if root.name in GRADE_FOLDERS else root
    return parent


class OutputGuard:
    """The inputs of one command, and the refusals that keep its outputs away from them (module docstring).

    Args:
        files: every input file of the data (as given: symlinks are followed, hardlinks recognised by inode).
        roots: the input folders (a dataset folder); the folders of ``files`` are added (`dataset_root`), both as
            given and resolved, so that a folder of symlinks protects the original dataset too.
        protect: input files that are never written or deleted but whose folder may receive outputs (a datalist
            kept in its run folder).
        datasets: the refusal of a path (a folder or file to write) inside any dataset, called with the path, what
            is written and the option (`pipeline.data.layouts.refuse_inside_dataset`; required: no guard is made
            without it).
    """

    def __init__(self, files: Iterable[str | os.PathLike] = (), roots: Iterable[str | os.PathLike] = (),
                 protect: Iterable[str | os.PathLike] = (), *, datasets: Callable[[Path, str, str], None]) -> None:
        self.datasets = datasets
        given = [Path(f).expanduser() for f in files]
        kept = [Path(f).expanduser() for f in protect if f]
        self.files = {_real(f) for f in given}
        self.protected = self.files | {_real(f) for f in kept}
        self.inodes = {i for f in (*given, *kept) if (i := _inode(f)) is not None}
        folders = {_real(r) for r in roots if r}
        for f in given:
            if _real(f.absolute().parent) in folders:  # a case folder given as the input (one case): it is the data
                continue
            folders.add(_real(dataset_root(f.absolute())))
            folders.add(dataset_root(_real(f)))
        self.roots = sorted(folders)

    def _is_input(self, path: Path) -> bool:
        return _real(path) in self.protected or (_inode(path) or (None, None)) in self.inodes

    def folder(self, output: object, *, what: str, option: str) -> Path:
        """``output`` (resolved) if it may receive ``what``: it is not, does not lie inside and does not hold an
        input folder, holds no input file and lies in no dataset (``datasets``).

        Raises:
            UserError: naming the folder, the input and the option to change.
        """
        out = _real(as_path(output, option.lstrip("-")))
        blocker = next((a for a in (out, *out.parents) if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise UserError(f"{option} {out}: {blocker} is a file, not a folder, so {what} cannot be written there; "
                            f"pass {option} a folder (a new one is made)")
        for root in self.roots:
            if is_within(out, root) or is_within(root, out):
                rel = "is" if out == root else ("lies inside" if is_within(out, root) else "contains")
                # the advice: a folder beside the input (or beside the output, where that holds the input)
                beside = root.parent / out.name if rel == "lies inside" else out.parent / f"{out.name}_out"
                raise UserError(f"the output folder {out} {rel} the input folder {root}: {what} must never be "
                                f"written among the inputs; pass {option} a folder outside it (e.g. {beside})")
        for f in self.files:
            if is_within(f, out):
                raise UserError(f"the output folder {out} holds the input file {f}: {what} would be written among "
                                f"the inputs (and could replace them); pass {option} a folder that holds no input")
        self.datasets(out, what, option)  # any dataset's folder, an input of this command or not
        return out

    def file(self, output: object, *, what: str, option: str) -> Path:
        """``output`` (resolved) if it may be written as ``what``: not an input file (by path, symlink or hardlink),
        not inside an input folder nor in any dataset (``datasets``).

        Raises:
            UserError: naming the file, the input and the option to change.
        """
        path = Path(as_path(output, option.lstrip("-"))).expanduser()
        if self._is_input(path):
            raise UserError(f"{path} is an input of this command ({_real(path)}): writing {what} there would "
                            f"replace it; pass {option} another file")
        out = _real(path)
        if out.is_dir():
            raise UserError(f"{option} {out} is a folder: {what} is a file; pass {option} a file name (in that folder, "
                            "say)")
        blocker = next((a for a in out.parents if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise UserError(f"{option} {out}: {blocker} is a file, not a folder, so {what} cannot be written there; "
                            f"pass {option} a path in a folder")
        for root in self.roots:
            if is_within(out, root):
                raise UserError(f"{out} lies inside the input folder {root}: {what} must never be written among "
                                f"the inputs; pass {option} a file outside it")
        self.datasets(out, what, option)  # any dataset's folder, an input of this command or not
        return out

    def may_delete(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is no input and lies in no input folder (what ``--overwrite`` may delete)."""
        p = Path(path)
        return not self._is_input(p) and not any(is_within(_real(p), root) for root in self.roots)


#: MONAI's export commands (``python -m monai.bundle <command> ... --filepath F``): each writes F whatever is there.
#: Their first parameters, as Fire maps positional arguments (monai.bundle.scripts, 1.6).
EXPORT_COMMANDS = ("ckpt_export", "onnx_export", "trt_export")
EXPORT_POSITIONALS = ("net_id", "filepath", "ckpt_file")

#: The suffixes of an earlier export, which an export may replace (TorchScript, ONNX, TensorRT).
EXPORT_SUFFIXES = (".ts", ".onnx", ".engine", ".plan", ".trt")

#: A run's own files, relative to its folder (what training writes): an export never replaces them.
RUN_FILES = (RUN_RECORD, "datalist.json", *RUN_WRITES, "models/*")


def _export_ids(argv: list[str]) -> dict[str, str]:
    """``{id: value}`` of an export's command line (``argv`` after the command), positionals included."""
    ids = {key: value for key, _, value in cli_ids(argv)}
    positionals, skip = [], False
    for i, token in enumerate(argv):
        if token == "--":
            break
        if skip:
            skip = False
            continue
        if token.startswith("-") and token.lstrip("-")[:1].isalpha():
            skip = "=" not in token and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            continue
        positionals.append(token)
    given = {**dict(zip(EXPORT_POSITIONALS, positionals, strict=False)), **ids}  # fewer given: the rest keyword
    return {**_args_file(given.get("args_file")), **given}  # as MONAI: the command line over the args file


def _args_file(path: str | None) -> dict[str, str]:
    """``{id: value}`` of MONAI's ``--args_file`` (JSON or YAML), as strings; empty when none is given or it cannot
    be read (MONAI then refuses it itself)."""
    if not path:
        return {}
    try:
        from monai.bundle import ConfigParser  # noqa: PLC0415 - the export commands alone need it

        content = ConfigParser.load_config_file(str(Path(path).expanduser()))
    except Exception:  # noqa: BLE001 - MONAI's own reader says what is wrong with it
        return {}
    return {str(k): str(v) for k, v in content.items() if v is not None} if isinstance(content, dict) else {}


def export_refusal(argv: list[str], *, datasets: Callable[[Path, str, str], None]) -> UserError | None:
    """The refusal of a MONAI export whose ``filepath`` (``--filepath`` or its place among the positionals) is a
    file it must not write over: the checkpoint it exports (``ckpt_file``), or a run's own file (`RUN_FILES` of a
    folder holding ``run.json``: its models, its record), or any existing file but an earlier export
    (`EXPORT_SUFFIXES`: an image, a segmentation or a record is not one); None otherwise (an earlier export is
    replaced, as MONAI does: docs/after-training.md), and any place inside a dataset (``datasets``, the rule every
    writer's guard applies: ``pipeline.data.layouts.export_refusal`` passes it). ``--args_file`` is read as MONAI
    reads it: the command line wins over it.
    """
    if not argv or argv[0] not in EXPORT_COMMANDS:
        return None
    ids = _export_ids(argv[1:])
    if not ids.get("filepath"):
        return None
    target = Path(ids["filepath"]).expanduser()
    try:
        datasets(target, f"{argv[0]}'s export", "--filepath")
    except UserError as refusal:
        return refusal
    if not target.exists():
        return None
    real = _real(target)
    ckpt = ids.get("ckpt_file")
    if ckpt and _real(ckpt) == real:
        return UserError(f"--filepath {target} is the checkpoint {argv[0]} exports (--ckpt_file): it would be written "
                         "over; name a new file, such as model.ts or model.onnx beside the run")
    run = next((folder for folder in real.parents if kinds_in(folder).get("run") == folder / RUN_RECORD), None)
    if run is not None and any(real.relative_to(run).match(pattern) for pattern in RUN_FILES):
        return UserError(f"--filepath {target} is a file of the run {run} ({real.relative_to(run)}): {argv[0]} "
                         "would write over it; name a new file")
    if real.suffix.lower() not in EXPORT_SUFFIXES:  # an image, a segmentation, a record: never an earlier export
        return UserError(f"--filepath {target} exists and is no export ({', '.join(EXPORT_SUFFIXES)}): {argv[0]} "
                         "would write over it; name a new file")
    return None
