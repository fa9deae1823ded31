"""What an output folder is, by the record its writer leaves there: one table that every writer reads before it
claims a folder, so that no writer puts its files into another kind's folder (segmentations among an evaluation's
tables, an evaluation's tables among a model's segmentations or in a run folder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import read_json

#: A training run's record in its folder (`pipeline.model.record`).
RUN_RECORD = "run.json"

#: The record each writer leaves in the folder it writes, by the kind of folder: a training run (`run.json`,
#: `pipeline.model.record.RUN_RECORD`), inference's segmentations (`pipeline.core.provenance.PROVENANCE`), an
#: evaluation (`pipeline.evaluation.reference.SUMMARIES`) and a comparison (`COMPARISON_RECORD` there).
FOLDER_RECORDS: dict[str, tuple[str, ...]] = {
    "run": (RUN_RECORD,),
    "segmentations": ("provenance.json",),
    "evaluation": ("summary.json", "official_summary.json"),
    "comparison": ("comparison.json",),
}

#: What every training writes in its run folder besides its record ``run.json`` (written after it: a folder that
#: holds one of them and no run's record holds a user's file of the name). ``datalist.json`` is written only where
#: none is.
RUN_WRITES = ("metadata.json", "history.csv", "progress.png")

#: A run's own sub-folders (training's models and TensorBoard events): the run's kind, though they hold no record.
RUN_FOLDERS = ("models", "tensorboard")

#: The kinds whose folders also take another kind's files: an evaluation's folder its pictures.
SHARED: dict[str, tuple[str, ...]] = {"pictures": ("evaluation",)}


def is_run_record(content: object) -> bool:
    """Whether ``content`` (a ``run.json`` read) is a training run's record: a JSON object with the run's ``ids``
    (a user's ``run.json`` is not one). The one test of it: training's refusal of a user's file, the kinds here."""
    return isinstance(content, dict) and "ids" in content


def _is_record(path: Path, kind: str) -> bool:
    """Whether ``path`` is ``kind``'s record: a JSON object (a run's names its ``ids``, an evaluation's summary its
    ``reference``; a user's ``run.json`` or ``summary.json`` is not one)."""
    try:
        content = read_json(path)
    except (OSError, ValueError):
        return False
    if kind == "run":
        return is_run_record(content)
    return isinstance(content, dict) and (kind != "evaluation" or bool(content.get("reference")))


def kinds_in(folder: str | os.PathLike) -> dict[str, Path]:
    """``{kind: its record}`` for each kind whose record ``folder`` holds (`FOLDER_RECORDS`)."""
    out = Path(folder).expanduser()
    if out.name in RUN_FOLDERS and _is_record(out.parent / RUN_RECORD, "run"):  # inside a run: models, events
        return {"run": out.parent / RUN_RECORD}
    found = {}
    for kind, names in FOLDER_RECORDS.items():
        record = next((out / n for n in names if (out / n).is_file() and _is_record(out / n, kind)), None)
        if record is not None:
            found[kind] = record
    return found


def refuse_other_kinds(folder: str | os.PathLike, kind: str, option: str, *, allowed: Sequence[str] = ()) -> None:
    """Refuse to write ``kind`` (a `FOLDER_RECORDS` kind, or ``pictures``) into ``folder`` when it holds another
    kind's record (``allowed`` and `SHARED` apart).

    Raises:
        UserError: naming the folder, the record found, and ``option`` to change.
    """
    others = {k: r for k, r in kinds_in(folder).items()
              if k != kind and k not in allowed and k not in SHARED.get(kind, ())}
    if others:
        other, record = next(iter(others.items()))
        article = "an" if other[0] in "aeiou" else "a"
        what = {"run": "a training run", "segmentations": "a model's segmentations"}.get(other, f"{article} {other}")
        raise UserError(f"{Path(folder).expanduser()} holds {what} ({record.name}); one folder per kind of result: "
                        f"pass another {option} for the {kind}")
