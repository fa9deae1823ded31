"""Whether a model trained on the cases it segments: by case id (run.json's split) or by the images' bytes (its
``training_images``), so that no Dice of a training case passes for a held-out one (`trained_on`,
`check_held_out`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.core.config import ALL_FOLDS, as_fold, as_infer_fold
from pipeline.core.provenance import ID_ONLY, file_digest, id_only_note, input_identity
from pipeline.data.layouts import Case
from pipeline.model.record import RunError


def _training_images(record: Mapping) -> list[list[tuple]]:
    """run.json's ``training_images``: each training case's files as ``(size, fast hash, sha256)``; a case recorded
    in another form is left out."""
    return [[tuple(image) for image in case] for case in record.get("training_images") or []
            if isinstance(case, list) and all(isinstance(i, list) and len(i) == 3 for i in case)]


def _copies_of_training_cases(record: Mapping, items: Sequence[dict]) -> list[str]:
    """The ids of ``items`` whose image files are all, byte for byte, those of one training case (a case copied
    under another name). Only files whose size and fast hash match a training image's are read whole."""
    cases = _training_images(record)
    fast = {(size, fast_hash) for case in cases for size, fast_hash, _ in case}
    whole = {tuple(sorted(digest for _, _, digest in case)) for case in cases}
    out = []
    for it in items:
        if not it.get("image"):
            continue
        files = input_identity(Case.from_item(it).images)
        if files and all((r["size"], r["hash"]) in fast for r in files):
            if tuple(sorted(file_digest(r["path"]) for r in files)) in whole:
                out.append(str(it["case"]))
    return out


def _other_images_under_training_ids(record: Mapping, items: Sequence[dict]) -> set[str]:
    """The ids of ``items`` that run.json's split trains on but whose image files are those of no training case
    (``training_images``; by size and fast hash): another patient under a training case's id, or the same one saved
    again (other bytes). By content, not by position: ``training_images`` is in the datalist's order, the split's
    ids sorted. Empty where the record holds no images to compare."""
    train = set((record.get("split") or {}).get("train") or [])
    recorded = {tuple(sorted((size, fast) for size, fast, _ in files)) for files in _training_images(record)}
    if not train or not recorded:
        return set()
    out = set()
    for it in items:
        case = str(it["case"])
        if case in train and it.get("image"):
            files = input_identity(Case.from_item(it).images)
            if tuple(sorted((r["size"], r["hash"]) for r in files)) not in recorded:
                out.add(case)
    return out


def trained_on(record: Mapping | None, items: Sequence[dict]) -> dict[str, bool | str]:
    """``{case id: mark}`` of the ``items`` that trained the model of ``record``, by identity: its run.json's split
    names the case, or its image files are, byte for byte, a training case's (``training_images``: a training case
    copied under another name, as later BraTS editions renamed their cases). The mark is True, or `ID_ONLY` where
    the split names the case but its images are not those it trained on (held out only if it is another patient:
    the bytes cannot tell). Empty without a record."""
    trained = set(((record or {}).get("split") or {}).get("train", []))
    if not record:
        return {}
    copies = set(_copies_of_training_cases(record, [it for it in items if str(it["case"]) not in trained]))
    other = _other_images_under_training_ids(record, items)
    return {str(it["case"]): ID_ONLY if str(it["case"]) in other else True for it in items
            if str(it["case"]) in trained or str(it["case"]) in copies}


def check_held_out(record: Mapping | None, items: Sequence[dict], infer_fold: object) -> None:
    """Refuse ``--infer_fold`` (a fold's cases, segmented to score the model on cases it never saw) when the model
    trained on any of them, by case id against its run.json's split: their Dice would pass for a validation score.
    (A fold ensemble: `pipeline.inference.ensemble.check_ensemble_held_out`.)

    Raises:
        RunError: the model's training cases among the fold's, named with the fold it validated on.
    """
    if as_infer_fold(infer_fold) is None or not record:
        return
    seen = trained_on(record, items)
    if seen:
        ids = record.get("ids") or {}
        fold = ids.get("fold")
        if fold == ALL_FOLDS:
            validated = "it validated on no case (--fold all)"
        elif fold is None:
            validated = "its run.json records no validation fold"
        elif as_fold(fold) != as_infer_fold(infer_fold):  # numbers, however either was written ("01", " 1")
            validated = f"it validated on fold {fold}: pass --infer_fold {fold}"
        elif not set(seen) & set((record.get("split") or {}).get("train", [])):
            validated = ("their images are, byte for byte, those of cases it trained on, under other names "
                         "(run.json's training_images)")
        else:
            validated = (f"this datalist's folds are not those it trained with: pass "
                         f"{ids.get('datalist') or 'its run folder/datalist.json'}")
        names = list(seen)
        raise RunError(f"--infer_fold {infer_fold}: this model trained on {len(seen)} of the fold's {len(items)} "
                       f"case(s) ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}){id_only_note(seen)}, so "
                       f"their Dice would not be held out; {validated}, use a model that never trained on them, or "
                       "drop --infer_fold to segment every case")
