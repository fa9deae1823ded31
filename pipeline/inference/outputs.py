"""What inference may write and what it skips: the output folder's guard and lock, the provenance of each
segmentation, the cases still to do, and the report that ends the run."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from pipeline.core.config import as_bool
from pipeline.core.errors import UserError
from pipeline.core.files import FolderLock, gzip_is_whole, remove_temporaries
from pipeline.core.guard import OutputGuard
from pipeline.core.kinds import refuse_other_kinds
from pipeline.core.provenance import (
    CHANGED,
    MOVED,
    OTHER,
    PROVENANCE,
    SAME,
    InputRef,
    Provenance,
    input_identity,
    ref_path,
)
from pipeline.data.layouts import Case, output_guard
from pipeline.data.source import DataSource
from pipeline.inference.viewing import edited_tables
from pipeline.inference.writers import BackgroundWriters
from pipeline.inference.writers import writer_threads as writer_threads_of

logger = logging.getLogger(__name__)

#: Sub-folder of ``output_dir`` for the region probabilities (``--save_probabilities true``).
PROBABILITIES = "probabilities"

#: How the header's ``descrip`` of a probability map inference wrote begins (its regions follow).
PROBABILITIES_DESCRIP = "regions "


#: How the header's ``descrip`` of a segmentation inference wrote reads.
SEGMENTATION_DESCRIP = "segmentation"


def voxels_digest(labels: np.ndarray) -> str:
    """The first 23 hex digits of the SHA-256 of a segmentation's voxels ``(H, W, D)`` as uint8 (what fits the NIfTI
    header's ``aux_file``)."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).hexdigest()[:23]


def written_here(path: str | os.PathLike, model: str | None, *, probabilities: bool = False) -> bool:
    """Whether ``path`` is a segmentation (uint8, ``descrip`` `SEGMENTATION_DESCRIP`) or, with ``probabilities``, a
    probability map (uint16, ``descrip`` `PROBABILITIES_DESCRIP`...) that inference wrote with ``model`` (its id in
    ``intent_name``): a file an interrupted inference left before its record (provenance.json) is told from a
    user's file, or another model's, by it."""
    dtype, mark = (np.uint16, PROBABILITIES_DESCRIP) if probabilities else (np.uint8, SEGMENTATION_DESCRIP)
    try:
        image = nib.load(path)
        header = image.header
        ours = (bool(model) and header.get_data_dtype() == dtype
                and np.asarray(header["descrip"]).tobytes().startswith(mark.encode())
                and np.asarray(header["intent_name"]).tobytes().rstrip(b"\0") == str(model)[:15].encode())
        if ours and not probabilities:  # and its voxels as written: a copy edited and saved with its header is not
            recorded = np.asarray(header["aux_file"]).tobytes().rstrip(b"\0").decode()
            ours = recorded == voxels_digest(np.asarray(image.dataobj))
        return ours
    except Exception:  # noqa: BLE001 - unreadable: not one of ours
        return False


def reference_path(image: object) -> str:
    """The first input file of a loaded image (``MetaTensor.meta['filename_or_obj']``) or of a path list."""
    ref = image.meta["filename_or_obj"] if hasattr(image, "meta") else image
    if isinstance(ref, (list, tuple)):
        ref = ref[0]
    return str(ref)




class InferenceReport:
    """What inference did with each case: written, skipped (and why), or failed (and why). `finish` prints
    the summary and releases the output folder.

    The data check (`pipeline.data.source.DataSource.checked_inference_items`) records the cases it leaves out,
    `pending_items` the cases already segmented by this model from these inputs, `SaveProbabilitiesd` and
    `SaveBratsLabeld` what they write. Each written case goes into the folder's provenance record
    (`pipeline.core.provenance.Provenance`: the model, the identity of its inputs, and the label scheme its
    segmentation is numbered in).

    ``guard``: the output guard of the data (`guard_outputs` sets the data's, `pipeline.core.guard.OutputGuard`);
    nothing is deleted that it does not allow (`OutputGuard.may_delete`). Without one, a guard that knows no input.

    The files are written by ``writer_threads`` background threads (`pipeline.inference.writers`; 0: in the
    calling thread); `finish` waits for every write before it reports.
    """

    def __init__(self, output_dir: str | os.PathLike = "", model: str | None = None,
                 writer_threads: object = 0, trained: Mapping[str, bool | str] | Iterable[str] = (),
                 guard: OutputGuard | None = None) -> None:
        self.output_dir = str(output_dir)
        self.guard = guard if guard is not None else output_guard()
        self.model = model
        # the cases the model trained on, {case: mark} (`pipeline.model.held_out.trained_on`): marked in provenance.json
        self.trained = dict(trained) if isinstance(trained, Mapping) else dict.fromkeys(trained, True)
        self.writers = BackgroundWriters(writer_threads_of(writer_threads))
        self.written: list[str] = []
        self.skipped: dict[str, str] = {}
        self.failed: dict[str, list[str]] = {}
        self.probabilities: set[str] = set()
        self.kept_tables: list[Path] = []  # viewer tables edited in this folder: not written again (`guard_outputs`)
        self._replacing: set[str] = set()  # cases whose earlier record was dropped before their files are replaced
        self.lock: FolderLock | None = None
        self._provenance: Provenance | None = None

    @property
    def provenance(self) -> Provenance:
        """The output folder's record, read once."""
        if self._provenance is None:
            self._provenance = Provenance(self.output_dir)
        return self._provenance

    def fail(self, case: str, reason: str) -> None:
        """Record (and log) that ``case`` failed; ``reason`` is one line naming the file and the fix."""
        logger.error("%s", reason)
        self.failed.setdefault(case, []).append(reason)

    def skip(self, case: str, reason: str) -> None:
        self.skipped[case] = reason

    def wrote_probabilities(self, case: str) -> None:
        self.probabilities.add(case)

    def write(self, case: str, out: str | os.PathLike, write: Callable[[], object],
              done: Callable[[object], None]) -> None:
        """Run ``write()`` (which writes ``out``) in a writer thread after the earlier writes of ``case``, then
        ``done(result)``; a write that raises fails the case (one line naming ``out``) and the others go on.

        Before the first write of a case, its earlier record in provenance.json (another model's, with
        ``--overwrite``) is dropped: a run stopped between replacing the files and recording them leaves files of
        unknown origin, refused by the next run, never files credited to the model that did not write them."""
        if self.output_dir and case not in self._replacing:
            self._replacing.add(case)
            if (Path(self.output_dir) / PROVENANCE).is_file():  # a folder with records (else nothing to drop)
                with self.writers.lock:  # the writer threads record cases under it
                    if case in self.provenance.cases:
                        self.provenance.forget(case)
        self.writers.submit(case, write, done, lambda e: self.fail(
            case, f"case {case}: writing {out} failed ({type(e).__name__}: {e})"))

    def wrote(self, case: str, path: str | os.PathLike, inputs: Sequence[InputRef] = (), *,
              scheme: str | None = None) -> None:
        """Record that ``case``'s segmentation was written to ``path`` from the files ``inputs``, numbered in the
        label scheme ``scheme`` (its name; None: not recorded). Probabilities of the case left by an earlier writer
        and not written again now are stale: they are deleted, unless the guard forbids it (an input of this
        command, or a file in an input folder, reached through a link: kept, and logged)."""
        self.written.append(case)
        if not self.output_dir:
            return
        maps = Path(self.output_dir) / PROBABILITIES / f"{case}.nii.gz"
        if case not in self.probabilities and (maps.exists() or maps.is_symlink()):
            if self.guard.may_delete(maps):
                maps.unlink()
                logger.info("case %s: deleted %s, written by an earlier run of this folder for a segmentation that "
                            "is now replaced", case, maps)
            else:
                logger.warning("case %s: kept %s, stale probabilities of an earlier run, because it is an input of "
                               "this command or lies in an input folder (%s)", case, maps, maps.resolve())
        saved = case in self.probabilities
        self.provenance.record(case, model=self.model, file=Path(path).name, inputs=input_identity(inputs, digest=True),
                               probabilities=self.model if saved else None,
                               trained=self.trained.get(case, False), scheme=scheme,
                               output=input_identity([path], digest=True)[0],
                               probabilities_output=input_identity([maps], digest=True)[0] if saved else None)

    def summary(self) -> str:
        """``inference: wrote N case(s) to DIR; skipped K ...; M case(s) failed:`` then one line per failure."""
        head = f"inference: wrote {len(self.written)} case(s) to {self.output_dir or 'the output folder'}"
        if self.skipped:
            reasons: dict[str, int] = {}
            for why in self.skipped.values():
                reasons[why] = reasons.get(why, 0) + 1
            head += "; skipped " + ", ".join(f"{n} {why}" for why, n in reasons.items())
        if not self.failed:
            return head + "; no case failed"
        lines = [f"{head}; {len(self.failed)} case(s) failed and were skipped:"]
        lines += [f"  {reason}" for reasons in self.failed.values() for reason in reasons]
        return "\n".join(lines)

    def finish(self) -> None:
        """Wait for the writers, print the summary, release the output folder; exit with status 1
        (``SystemExit``) when any case failed."""
        self.writers.close()
        print(self.summary(), flush=True)
        if self.lock is not None:
            self.lock.release()
        if self.failed:
            raise SystemExit(1)


#: The item key that carries a case's inputs to the writers (`with_inputs`; a JSON list as text: it survives
#: batching, and any character of a path, ``:`` included, survives it).
INPUTS_KEY = "inputs"


def image_files(item: Mapping, channels: Sequence[str] | None = None) -> list[InputRef]:
    """The inputs of a datalist item's segmentation (`pipeline.core.provenance.input_refs`): those `with_inputs`
    gave it, else its image files, or its 4D file's volumes, named by ``channels`` (the names of its channels in its
    order: the data's description's) when given."""
    encoded = item.get(INPUTS_KEY)
    if isinstance(encoded, (list, tuple)):  # a batch of one
        encoded = encoded[0] if encoded else ""
    if encoded:
        return [r if isinstance(r, dict) else str(r) for r in json.loads(encoded)]
    return Case.from_item(item).inputs(channels)


def with_inputs(items: Sequence[Mapping], channels: Sequence[str] | None = None) -> list[dict]:
    """The items, each with its inputs named by ``channels`` (`image_files`) under `INPUTS_KEY`: what its
    segmentation is recorded as made from (provenance.json). Taken in the data's own channel order, before the
    images are put in the model's (`pipeline.model.record.match_channels`), so that a record compares with the
    data's cases channel by channel whatever model wrote it."""
    return [{**item, INPUTS_KEY: json.dumps([r if isinstance(r, Mapping) else str(r)
                                             for r in image_files(item, channels)])} for item in items]

def guard_outputs(data: DataSource, items: Sequence[Mapping], output_dir: object, *,
                  report: InferenceReport | None = None, overwrite: bool | str = False) -> Path:
    """Before anything is read or computed: refuse an output folder, or its `PROBABILITIES` sub-folder (a link
    into a dataset, say), among the inputs of ``data`` (its guard: `pipeline.core.guard.OutputGuard`, which is then
    the report's: nothing it protects is deleted); take its lock (one writer); refuse outputs of another model
    (`foreign_outputs`) unless ``overwrite``.

    Raises:
        UserError: the output folder or its probabilities folder is among the inputs, another live process writes
            into it, or it holds segmentations of these cases written by another model.
    """
    out = data.guard.folder(output_dir, what="segmentations", option="--output_dir")  # any dataset's too (labelsTr/)
    refuse_other_kinds(out, "segmentations", "--output_dir")  # not among a run's files, an evaluation's tables
    data.guard.folder(out / PROBABILITIES, what=f"region probabilities ({out / PROBABILITIES})",
                      option="--output_dir")
    lock = FolderLock(out, what="inference").acquire()
    for folder in (out, out / PROBABILITIES):  # held now: a temporary file there is a killed writer's
        if left := remove_temporaries(folder):
            logger.info("deleted %d temporary file(s) of an inference killed mid-write in %s (e.g. %s)", len(left),
                        folder, left[0].name)
    if report is not None:
        report.lock = lock
        report.guard = data.guard
    try:
        items = with_inputs(items, data.description.channels)  # named in the data's order
        record = report.provenance if report is not None else Provenance(out)
        refuse_other_dataset(data, out, record, items)
        if not as_bool(overwrite, "overwrite"):
            _refuse_foreign(items, out, report)
            theirs = edited_tables(out, data.description, [str(e["scheme"]) for e in record.cases.values()
                                                           if isinstance(e, dict) and e.get("scheme")])
            if theirs and not record.cases:  # a folder inference never wrote: the user's tables
                them = "them" if len(theirs) > 1 else "it"
                raise UserError(f"{theirs[0]} is not a table inference wrote (no provenance.json of it in {out}), and "
                                f"inference writes its own {theirs[0].name} there: move {them} aside, pass another "
                                f"--output_dir, or --overwrite true to replace {them}")
            if theirs and report is not None:  # inference's own folder: an edit of its table is kept
                report.kept_tables = theirs
                logger.info("kept %s: not this scheme's table as inference writes it (edited?); --overwrite true "
                            "writes it again", ", ".join(str(t) for t in theirs))
    except BaseException:
        lock.release()
        raise
    return out


def refuse_other_dataset(data: DataSource, output_dir: Path, record: Provenance,
                         items: Sequence[Mapping] = ()) -> None:
    """One output folder per dataset: refuse to write into a folder whose provenance records segmentations made
    from inputs outside ``data``'s folders (another dataset's, even under the same case names), unless they are one
    of ``items``' cases whose files hold the recorded contents (this dataset, moved or copied since, or also read
    through other channel names: `pipeline.core.provenance.Provenance.input_state`; those are segmented again).
    One case's folder at a time (``data.single``) may fill a folder case by case.

    Raises:
        UserError: naming such a case, its input and another folder to use.
    """
    if data.single is not None:
        return
    roots = [str(r) for r in data.guard.roots]
    files = {str(item["case"]): image_files(item) for item in items}
    for case, entry in record.cases.items():
        paths = [str(i.get("path", "")) for i in entry.get("inputs") or []]
        if not paths:
            continue
        if not any(os.path.realpath(p).startswith(tuple(os.path.join(r, "") for r in roots)) for p in paths) and (
                case not in files or record.input_state(case, files[case]) not in (MOVED, CHANGED)):
            raise UserError(
                f"{output_dir} holds segmentations of another dataset (case {case}, from {paths[0]}); one folder per "
                f"dataset: pass --output_dir {_free_folder(data, output_dir)} (or another new folder)")


def _free_folder(data: DataSource, output_dir: Path) -> Path:
    """A folder beside ``output_dir`` for ``data``'s segmentations that does not exist: ``seg_<data name>``, else
    ``seg_<its parent's name>_<data name>`` (siteA/test and siteB/test), else with ``_2``, ``_3``, ... after it."""
    name = Path(data.dataset_dir or data.datalist_path or "data").expanduser().resolve()
    label = name.stem if name.is_file() else name.name
    for candidate in (f"seg_{label}", f"seg_{name.parent.name}_{label}"):
        if not (output_dir.parent / candidate).exists():
            return output_dir.parent / candidate
    n = 2
    while (output_dir.parent / f"seg_{name.parent.name}_{label}_{n}").exists():
        n += 1
    return output_dir.parent / f"seg_{name.parent.name}_{label}_{n}"

def foreign_outputs(items: Sequence[Mapping], output_dir: str | os.PathLike, report: InferenceReport | None
                    ) -> list[str]:
    """``"<case> (model <id>)"`` for each item whose ``<case>.nii.gz`` exists in ``output_dir`` but was written by
    another model than ``report.model``, or by an unknown one (no provenance record), and ``probabilities/<case>
    .nii.gz (...)`` for each file there that no inference recorded as the case's probabilities (a user's: it was
    replaced with ``--save_probabilities``, deleted as stale without); empty without a model."""
    if report is None or report.model is None:
        return []
    foreign = []
    for item in items:
        case = str(item["case"])
        if (Path(output_dir) / f"{case}.nii.gz").exists():
            writer = report.provenance.model_of(case)
            if (writer != report.model and not broken_since(report.provenance, item, output_dir, report.model)
                    and not (case not in report.provenance.cases  # this model's, left before its record: again
                             and written_here(Path(output_dir) / f"{case}.nii.gz", report.model))):
                why = ("no record of its model" if case not in report.provenance.cases else
                       "not the file its record describes: put there since")
                foreign.append(f"{case} ({'model ' + writer if writer else why})")
                continue
        probabilities = Path(output_dir) / PROBABILITIES / f"{case}.nii.gz"  # replaced, or deleted as stale
        if ((probabilities.exists() or probabilities.is_symlink())
                and report.provenance.probabilities_of(case, probabilities) != report.model  # another's, or none
                and not written_here(probabilities, report.model, probabilities=True)):  # this model's, left unrecorded
            recorded = report.provenance.cases.get(case, {}).get("probabilities")
            why = ("no record of its model" if not recorded else f"model {recorded}" if recorded != report.model
                   else "not the file its record describes: put there since")
            foreign.append(f"{PROBABILITIES}/{probabilities.name} ({why})")
    return foreign


def broken_since(record: Provenance, item: Mapping, output_dir: str | os.PathLike, model: str | None) -> bool:
    """Whether ``model`` wrote the item's segmentation (provenance.json) and its file, no longer the one recorded,
    is not a valid segmentation of the input either (`output_is_valid`: cut short by a partial copy, say): nothing
    of value, so it is segmented again rather than refused as another's."""
    case = str(item["case"])
    out = Path(output_dir) / f"{case}.nii.gz"
    return (model is not None and record.cases.get(case, {}).get("model") == model and record.model_of(case) is None
            and not output_is_valid(out, reference_path(item["image"])))

def _refuse_foreign(items: Sequence[Mapping], output_dir: str | os.PathLike, report: InferenceReport | None) -> None:
    """Refuse, naming them, existing outputs of ``items`` written by another model, or from other files (another
    case of the same name: its recorded inputs are other resolved paths; changed files at the same paths are
    segmented again, not refused)."""
    foreign = foreign_outputs(items, output_dir, report)
    if foreign:
        raise UserError(
            f"{output_dir} already holds {len(foreign)} output(s) not written by this model "
            f"({report.model if report else None}): {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}; "
            "pass another --output_dir, or --overwrite true to replace them")
    record = report.provenance if report is not None else Provenance(output_dir)
    for item in items:
        case = str(item["case"])
        if (Path(output_dir) / f"{case}.nii.gz").exists() and record.input_state(case, image_files(item)) == OTHER:
            raise UserError(f"{output_dir} already holds a segmentation of case {case} made from other images "
                            f"({record.input_paths(case)[0]}, not {ref_path(image_files(item)[0])}, and not the same "
                            "contents; "
                            "provenance.json): another case of the same name? Pass another --output_dir, or "
                            "--overwrite true to replace it")

def output_is_valid(out_path: str | os.PathLike, reference: str | os.PathLike) -> bool:
    """Whether ``out_path`` is a whole segmentation of ``reference``: a ``.gz`` decompresses to its end (CRC and
    length checked), its header loads, its shape and affine are the reference's, and all its voxels can be read."""
    gz = str(out_path).endswith(".gz")
    if gz and not gzip_is_whole(out_path):
        return False
    try:
        out, ref = nib.load(out_path), nib.load(reference)
        if tuple(out.shape) != tuple(ref.shape[:3]) or not np.allclose(out.affine, ref.affine, atol=1e-4):
            return False
        needed = int(out.dataobj.offset) + int(np.prod(out.shape)) * out.get_data_dtype().itemsize
        if gz:  # decoded once above; the gzip trailer's length (mod 2**32) must cover every voxel
            with open(out_path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                if int.from_bytes(f.read(4), "little") != needed % 2**32:
                    return False
        else:
            np.asarray(out.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError):
        return False
    return True


def pending_items(items: Sequence[dict], output_dir: str | os.PathLike, *, overwrite: bool | str = False,
                  report: InferenceReport | None = None, probabilities: bool | str = False) -> list[dict]:
    """The items still to segment, decided before the network runs.

    Without ``overwrite`` a case is skipped only when its output is whole (`output_is_valid`) and its provenance
    record says this model (``report.model``) wrote it from inputs of the same identity (path, size, time, hash)
    and, with ``probabilities``, wrote its probabilities too; a case whose inputs changed since is segmented again.
    An output of another model, or of unknown origin, is never kept as if it were this model's: the run is refused,
    naming the cases, unless ``overwrite`` (then every item is segmented and replaced).

    Raises:
        UserError: outputs of another model or of unknown origin exist and not ``overwrite``.
    """
    if as_bool(overwrite, "overwrite"):
        return list(items)
    probabilities = as_bool(probabilities, "save_probabilities")
    _refuse_foreign(items, output_dir, report)
    record = report.provenance if report is not None else Provenance(output_dir)
    todo, redo, changed = [], [], []
    for item in items:
        case = str(item["case"])
        out = Path(output_dir) / f"{case}.nii.gz"
        model = report.model if report is not None else record.model_of(case)
        if not out.exists():
            todo.append(item)
        elif record.model_of(case) != model:  # another's were refused above: this model's, broken since
            redo.append(case)
            todo.append(item)
        elif record.input_state(case, image_files(item)) not in (SAME, MOVED):
            changed.append(case)
            todo.append(item)
        elif probabilities and (record.cases[case].get("probabilities") != model
                                or not (Path(output_dir) / PROBABILITIES / f"{case}.nii.gz").exists()):
            todo.append(item)  # segmented before without --save_probabilities: run again for them
        elif output_is_valid(out, reference_path(item["image"])):
            record.refresh_inputs(case, image_files(item))  # moved or touched since: recorded as they are now
            if report is not None:
                report.skip(case, "already segmented by this model from these inputs")
        else:
            redo.append(case)
            todo.append(item)
    if changed:
        logger.warning("segmenting again %d case(s) whose inputs changed since this model segmented them (or whose "
                       "record predates input tracking): %s", len(changed), ", ".join(changed))
    if redo:
        logger.warning("segmenting again %d case(s) whose output is not a valid segmentation of the input: %s",
                       len(redo), ", ".join(redo))
    done = len(items) - len(todo)
    if done:
        logger.info("skipping %d of %d case(s) already segmented by this model in %s%s (pass --overwrite true to "
                    "redo them)", done, len(items), output_dir, "" if todo else ": nothing to do")
    return todo
