"""Cross-validation as nnU-Net users know it: each fold's model segments its own validation cases, all of them are
evaluated together (out-of-fold), with a table per fold and overall (``RUN_DIR/cv_summary.json``).

``make cv`` trains fold ``f`` into ``<run_dir>/fold_<f>``; `cross_validation_summary` infers each fold's validation
cases with that fold's model through the bundle's inference command, evaluates them together and writes the table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.bundle import VERB_ENV, command, inference_command
from pipeline.core.config import as_folds, differing
from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_text, column_numbers, holding, read_json, read_table
from pipeline.core.process import run_child
from pipeline.data.datalist import folds_present, refuse_files_outside
from pipeline.data.source import DataSource
from pipeline.evaluation.evaluate import EVALUATION_OUTPUTS, evaluate, write_report
from pipeline.evaluation.reference import claim_output, reference_of
from pipeline.evaluation.regions import METRICS_TABLE
from pipeline.model.recipe import inference_overrides
from pipeline.model.record import model_interface, read_record, refuse_training_in_progress

#: The inference ids the cross-validation sets for each fold (id -> where from): ``extra`` may not set them.
CV_OPTIONS = {"run_dir": "RUN_DIR/fold_<f>", "datalist": "RUN_DIR/datalist.json", "infer_fold": "--folds",
              "output_dir": "RUN_DIR/cv/seg", "label_scheme": "the folds' run.json", "dataset_dir": "--dataset_dir"}


def _bundle_inference(fold_dir: Path, datalist: Path, fold: int, out: Path, fast: bool,
                      extra: Sequence[str], scheme: str = "auto", record: dict | None = None,
                      dataset_dir: str | os.PathLike | None = None) -> None:
    """Fold ``fold``'s model segments its validation cases into ``out``, in ``scheme``'s numbering (the scheme the
    folds trained with, which the evaluation then reads), with the inference recipe its run.json names
    (`pipeline.bundle.inference_files`: the budget recipe's post-processing, say), as ``pipeline infer`` would;
    ``fast`` only for a fold whose run.json names no config files (a run from before they were recorded);
    ``dataset_dir``: the data root of the datalist's relative paths (cv's ``--dataset_dir``)."""
    ids = {"datalist": datalist, "infer_fold": fold, "output_dir": out, "label_scheme": scheme,
           **({"dataset_dir": dataset_dir} if dataset_dir is not None else {})}
    if (record or {}).get("config_files"):
        cmd = inference_command(fold_dir, ids, record=record, extra=extra)
    else:
        own = inference_overrides(record, extra)  # the run's preprocessing overrides, unless extra gives them
        cmd = command("inference", {"run_dir": fold_dir, **own, **ids}, fast=fast) + list(extra)
    print(" ".join(str(c) for c in cmd), flush=True)
    returncode = run_child(cmd, {**os.environ, VERB_ENV: "cv"})  # its refusals name cv's --set
    if returncode != 0:
        raise UserError(f"cross-validation: inference of fold {fold} ({fold_dir}) failed with exit code "
                        f"{returncode}; see its message above")


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def fold_table(metrics_csv: str | os.PathLike, fold_of: dict[str, int]) -> dict:
    """``{"folds": {fold: {region: {"dice", "hd95", "cases"}}}, "overall": {...}}`` from a long-form metrics.csv."""
    rows = read_table(metrics_csv, ("case", "region", "dice", "hd95"), METRICS_TABLE)
    for key in ("dice", "hd95"):  # as numbers (an empty cell is NaN), each cell checked once
        for row, value in zip(rows, column_numbers(rows, key, metrics_csv), strict=True):
            row[key] = value
    regions = list(dict.fromkeys(r["region"] for r in rows))

    def summary(selected: list[dict]) -> dict:
        return {region: {"dice": _mean([r["dice"] for r in selected if r["region"] == region]),
                         "hd95": _mean([r["hd95"] for r in selected if r["region"] == region]),
                         "cases": len({r["case"] for r in selected if r["region"] == region})}
                for region in regions}

    folds = sorted(set(fold_of.values()))
    return {"folds": {str(f): summary([r for r in rows if fold_of.get(r["case"]) == f]) for f in folds},
            "overall": summary(rows)}


def format_cv_table(table: dict) -> str:
    """One row per fold and the overall row: mean Dice per region, then the mean over regions."""
    regions = list(table["overall"])
    header = f"{'fold':<8}{'cases':>6}" + "".join(f"{r:>12}" for r in regions) + f"{'mean':>10}"
    lines = ["cross-validation, out-of-fold Dice (each case by the fold that never trained on it)", header,
             "-" * len(header)]
    for name, regs in [*table["folds"].items(), ("all", table["overall"])]:
        dices = [regs[r]["dice"] for r in regions]
        cases = max((regs[r]["cases"] for r in regions), default=0)
        lines.append(f"{name:<8}{cases:>6}" + "".join(f"{d:>12.4f}" for d in dices) + f"{_mean(dices):>10.4f}")
    return "\n".join(lines)


def cv_outputs(run: Path, folds: Sequence[int], all_folds: Sequence[int]) -> tuple[Path, Path]:
    """``(evaluation folder, summary file)`` of an out-of-fold table of ``folds``: for every fold of the datalist
    (``all_folds``) ``cv/eval`` and ``cv_summary.json``; for fewer (those trained so far, or ``--folds``) names of
    their own (``cv/eval_folds_0_1``), so that a table of two folds is never replaced by one of five under the same
    name, nor the reverse."""
    subset = "" if sorted(folds) == sorted(all_folds) else "_folds_" + "_".join(map(str, sorted(folds)))
    return run / "cv" / f"eval{subset}", run / f"cv_summary{subset}.json"


#: What ``cv_summary.json`` holds (`cross_validation_summary`).
CV_SUMMARY_KEYS = ("folds", "segmentations", "evaluation", "overall", "mean_dice")


def _is_cv_summary(path: Path, seg: Path, eval_dir: Path) -> bool:
    """Whether ``path`` is the ``cv_summary.json`` `cross_validation_summary` wrote for this run: its keys alone,
    naming this run's segmentations ``seg`` and evaluation ``eval_dir`` (another run's copied there, or one a user
    annotated, is not; a run folder moved since needs ``--overwrite`` once)."""
    try:
        content = read_json(path)
    except (OSError, ValueError):
        return False
    if not (isinstance(content, dict) and set(content) <= set(CV_SUMMARY_KEYS)):
        return False
    named = [content.get(k) for k in ("segmentations", "evaluation")]
    return all(isinstance(n, str) for n in named) and [os.path.realpath(n) for n in named] == [
        os.path.realpath(seg), os.path.realpath(eval_dir)]


@holding
def cross_validation_summary(run_dir: str | os.PathLike, dataset_dir: str | os.PathLike | None = None, *,
                             folds: Sequence[int] | None = None, fast: bool = False,
                             extra: Sequence[str] = (), overwrite: bool = False) -> dict:
    """Out-of-fold inference and evaluation of a ``make cv`` run (module docstring); returns ``cv_summary.json``.

    Args:
        run_dir: the cross-validation run (``datalist.json`` and ``fold_<f>/``).
        dataset_dir: the data root of a model-zoo datalist's relative paths (the references are the datalist's
            own label files).
        folds: the folds to use; default: every ``fold_<f>`` with a ``models/model.pt``.
        fast: infer with ``fast.yaml`` (`pipeline.bundle`); the network comes from each fold's ``run.json``.
        extra: more ``--id value`` arguments for inference (``--device cpu``).
        overwrite: replace files of the names the table writes that no cross-validation table wrote (a user's
            ``metrics.csv`` in ``cv/eval``, their ``cv_summary.json``); without it they are refused.

    Raises:
        UserError: no datalist, no trained fold, or a fold's inference failed.
    """

    run = Path(run_dir)
    datalist = run / "datalist.json"
    if not datalist.is_file():
        raise UserError(f"no {datalist}: run make cv first (it writes the folds there and trains each one)")
    trained = sorted(int(p.name.split("_", 1)[1]) for p in run.glob("fold_*")  # fold_<f> as make cv names it
                     if p.name.split("_", 1)[1].isdigit() and p.name == f"fold_{int(p.name.split('_', 1)[1])}"
                     and (p / "models" / "model.pt").is_file())
    folds = as_folds(folds, "folds") if folds is not None else trained
    missing = [f for f in folds if f not in trained]
    if not folds or missing:
        raise UserError(f"{run}: no trained model for fold(s) {missing or '(none)'} (fold_<f>/models/model.pt); "
                        "train them first: make cv")
    for f in folds:
        refuse_training_in_progress(run / f"fold_{f}", what="the cross-validation table")
    data = DataSource(dataset_dir, datalist)
    if dataset_dir is not None:  # the references are the datalist's labels: a --dataset_dir it does not use is refused
        refuse_files_outside(datalist, data.datalist, dataset_dir)
    fold_of = {str(it["case"]): int(it["fold"]) for it in data.datalist.get("training", [])
               if int(it["fold"]) in folds}
    records = {f: read_record(run / f"fold_{f}") or {} for f in folds}
    for f, record in records.items():  # each case is scored by the fold that validated on it: its recorded split
        recorded = set((record.get("split") or {}).get("validation") or [])
        listed = {c for c, fold in fold_of.items() if fold == f}
        if recorded and recorded != listed:
            moved = sorted(recorded ^ listed)
            raise UserError(f"{datalist} lists other validation cases for fold {f} than fold_{f} was trained with "
                            f"({run / f'fold_{f}' / 'run.json'}: {', '.join(moved[:5])}"
                            f"{' ...' if len(moved) > 5 else ''} differ): an out-of-fold table would score cases the "
                            "fold trained on; restore the datalist the folds were trained on, or retrain them "
                            "(make cv)")
    schemes = {f: (record.get("ids") or {}).get("label_scheme") for f, record in records.items()}
    if len(set(filter(None, schemes.values()))) > 1:
        raise UserError(f"{run}: the folds were trained with different label schemes ("
                        + ", ".join(f"fold {f}: {s}" for f, s in schemes.items()) + "); one out-of-fold table needs "
                        "one numbering: retrain the folds that differ (make cv), or pass --folds without them")
    scheme = next(filter(None, schemes.values()), None) or "auto"
    interfaces = {f: model_interface(record) for f, record in records.items()}  # as the fold ensemble compares them
    first = folds[0]
    for f, interface in interfaces.items():  # what both records state (a record of older code lacks some fields)
        stated = [k for k, v in interface.items() if v is not None and interfaces[first].get(k) is not None]
        mine, theirs = ({k: i[k] for k in stated} for i in (interfaces[first], interface))
        if mine != theirs:
            raise UserError(f"fold {f} of {run} was trained with another network, data or recipe than fold {first} "
                            f"({'; '.join(differing(mine, theirs))}): one out-of-fold table scores one "
                            "configuration; retrain the fold (make cv), or pass --folds without it")
    seg = run / "cv" / "seg"
    eval_dir, summary_file = cv_outputs(run, folds, folds_present(data.datalist))
    # one writer: a second cv of the run is refused, not interleaved; a user's files of the names it writes too
    claim_output(eval_dir, "evaluation", "RUN_DIR", writes=EVALUATION_OUTPUTS, overwrite=overwrite)
    if summary_file.exists() and not _is_cv_summary(summary_file, seg, eval_dir) and not overwrite:
        raise UserError(f"{summary_file} is not the out-of-fold table this command wrote for {run} (it names other "
                        "folders, or holds more), and it writes its own there: move it aside, or pass --overwrite to "
                        "replace it")
    for f in folds:
        _bundle_inference(run / f"fold_{f}", datalist, f, seg, fast, extra, scheme, records[f], dataset_dir)
    # through the evaluation's own rules (`pipeline.evaluation.evaluate.evaluate`): the cv's earlier evaluation of
    # these segmentations is replaced once the new one is written, its pictures (drawn from the old scores) go, and
    # the report is written again; one model per fold by design: each case by the fold that left it out
    summary = evaluate("legacy", seg, reference_of(data), eval_dir, scheme=scheme, cases=sorted(fold_of),
                       allow_mixed=True, overwrite=True)
    report = write_report(eval_dir)
    table = fold_table(eval_dir / "metrics.csv", fold_of)
    result = {"folds": folds, "segmentations": str(seg), "evaluation": str(eval_dir), **table,
              "mean_dice": summary.get("mean_dice")}
    atomic_write_text(summary_file, json.dumps(result, indent=2, default=str))
    print(format_cv_table(table))
    print(f"wrote {summary_file} (segmentations {seg}, evaluation {eval_dir}, report {report})", flush=True)
    return result

