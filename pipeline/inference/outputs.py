"""What inference may write and what it skips: the output folder's guard and lock, the provenance of each
segmentation, the cases still to do, and the report that ends the run."""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from pipeline.core.config import as_bool
from pipeline.core.errors import UserError
from pipeline.core.files import FolderLock, atomic_write_text, check_output_location, gzip_is_whole
from pipeline.inference.predict import PROBABILITIES, reference_path

logger = logging.getLogger(__name__)


class InferenceReport:
    """What inference did with each case: written, skipped (and why), or failed (and why). `finish` prints
    the summary and releases the output folder.

    The data check (`pipeline.data.source.DataSource.checked_inference_items`) records the cases it leaves out,
    `pending_items` the cases already segmented by the same model, and `SaveBratsLabeld` the cases
    written or that it cannot write. Each written case is recorded in ``<output_dir>/provenance.json`` with the
    model that wrote it (``model``: `pipeline.model.weights.model_id`), so that a later run can tell its own outputs
    from another model's.
    """

    def __init__(self, output_dir: str | os.PathLike = "", model: str | None = None) -> None:
        self.output_dir = str(output_dir)
        self.model = model
        self.written: list[str] = []
        self.skipped: dict[str, str] = {}
        self.failed: dict[str, list[str]] = {}
        self.lock: FolderLock | None = None

    def fail(self, case: str, reason: str) -> None:
        """Record (and log) that ``case`` failed; ``reason`` is one line naming the file and the fix."""
        logger.error("%s", reason)
        self.failed.setdefault(case, []).append(reason)

    def skip(self, case: str, reason: str) -> None:
        self.skipped[case] = reason

    def wrote(self, case: str, path: str | os.PathLike) -> None:
        self.written.append(case)
        if self.output_dir and self.model:
            record = read_provenance(self.output_dir)
            record[case] = {"model": self.model, "file": Path(path).name}
            atomic_write_text(Path(self.output_dir) / PROVENANCE, json.dumps(record, indent=1, sort_keys=True))

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
        """Print the summary, release the output folder; exit with status 1 (``SystemExit``) when any case failed."""
        print(self.summary(), flush=True)
        if self.lock is not None:
            self.lock.release()
        if self.failed:
            raise SystemExit(1)


#: ``<output_dir>/provenance.json``: ``{case: {"model": model id, "file": name}}`` of every segmentation written.
PROVENANCE = "provenance.json"


def read_provenance(output_dir: str | os.PathLike) -> dict:
    """The provenance record of an output folder (empty when there is none or it cannot be read)."""
    try:
        return json.loads((Path(output_dir) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return {}


def item_files(item: Mapping) -> list[str]:
    image = item.get("image", [])
    files = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    return [str(f) for f in (*files, *([item["label"]] if item.get("label") else []))]


def guard_outputs(items: Sequence[Mapping], output_dir: str | os.PathLike, *, report: InferenceReport | None = None,
                  dataset_dir: str | os.PathLike | None = None, datalist: str | os.PathLike | None = None,
                  overwrite: bool | str = False) -> Path:
    """Before anything is read or computed: refuse an output folder that is or holds an input of any case, or lies
    in the dataset folder (`pipeline.core.files.check_output_location`); take its lock (one writer); refuse
    outputs of another model (`foreign_outputs`) unless ``overwrite``.

    Raises:
        UserError: the output folder is among the inputs, another live process writes into it, or it holds
            segmentations of these cases written by another model.
    """
    out = check_output_location(output_dir, [f for it in items for f in item_files(it)], what="segmentations",
                                option="--output_dir", dataset_dir=None if datalist else dataset_dir)
    lock = FolderLock(out, what="inference").acquire()
    if report is not None:
        report.lock = lock
    if not as_bool(overwrite, "overwrite"):
        _refuse_foreign(items, out, report.model if report is not None else None)
    return out


def foreign_outputs(items: Sequence[Mapping], output_dir: str | os.PathLike, model: str | None) -> list[str]:
    """``"<case> (model <id>)"`` for each item whose ``<case>.nii.gz`` exists in ``output_dir`` but was written by
    another model than ``model``, or by an unknown one (no ``provenance.json`` entry); empty for ``model`` None."""
    if model is None:
        return []
    provenance = read_provenance(output_dir)
    foreign = []
    for item in items:
        case = str(item["case"])
        if (Path(output_dir) / f"{case}.nii.gz").exists():
            writer = provenance.get(case, {}).get("model")
            if writer != model:
                foreign.append(f"{case} ({'model ' + writer if writer else 'no record of its model'})")
    return foreign


def _refuse_foreign(items: Sequence[Mapping], output_dir: str | os.PathLike, model: str | None) -> None:
    foreign = foreign_outputs(items, output_dir, model)
    if foreign:
        raise UserError(
            f"{output_dir} already holds {len(foreign)} segmentation(s) not written by this model ({model}): "
            f"{', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}; pass another --output_dir, or "
            "--overwrite true to replace them"
        )


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

    Without ``overwrite``: an item without ``output_dir/<case>.nii.gz`` is segmented; one whose output was written
    by this same model (``report.model``, recorded in ``provenance.json``) and is whole (`output_is_valid`)
    is skipped; one whose output of this model is broken (a killed run) is segmented again. An output written by
    another model, or of unknown origin, is never kept as if it were this model's: the run is refused, naming the
    cases, unless ``overwrite`` (then every item is segmented and replaced).

    Raises:
        UserError: outputs of another model or of unknown origin exist and not ``overwrite``.
    """
    if as_bool(overwrite, "overwrite"):
        return list(items)
    probabilities = as_bool(probabilities, "save_probabilities")
    _refuse_foreign(items, output_dir, report.model if report is not None else None)
    todo, redo = [], []
    for item in items:
        case = str(item["case"])
        out = Path(output_dir) / f"{case}.nii.gz"
        if not out.exists():
            todo.append(item)
        elif probabilities and not (Path(output_dir) / PROBABILITIES / f"{case}.nii.gz").exists():
            todo.append(item)  # segmented before without --save_probabilities: run again for them
        elif output_is_valid(out, reference_path(item["image"])):
            if report is not None:
                report.skip(case, "already segmented by this model")
        else:
            redo.append(case)
            todo.append(item)
    if redo:
        logger.warning("segmenting again %d case(s) whose output is not a valid segmentation of the input: %s",
                       len(redo), ", ".join(redo))
    done = len(items) - len(todo)
    if done:
        logger.info("skipping %d of %d case(s) already segmented by this model in %s%s (pass --overwrite true to "
                    "redo them)", done, len(items), output_dir, "" if todo else ": nothing to do")
    return todo
