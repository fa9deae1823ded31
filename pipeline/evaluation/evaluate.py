"""One evaluation entry for both protocols: ``legacy`` (ours, `pipeline.evaluation.regions`) and ``official``
(the BraTS package, `pipeline.evaluation.official`), their tables and their pictures."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.config import as_bool
from pipeline.core.errors import UserError
from pipeline.core.files import column_numbers, hold_folder, holding, read_json, read_table, replaced_on_success
from pipeline.evaluation.official import evaluate_official, format_official_table, resolve_challenge
from pipeline.evaluation.plots import drawn_overlays, drawn_picture, plot_evaluation, run_name
from pipeline.evaluation.reference import (
    OVERLAYS,
    Reference,
    claim_output,
    evaluated_pair,
    evaluation_record,
    pair_cases,
)
from pipeline.evaluation.regions import METRICS_TABLE, evaluate_folders, format_table
from pipeline.evaluation.report import Report

logger = logging.getLogger(__name__)


#: Evaluation protocols of the ``evaluate`` command and of ``evaluate.yaml``.
PROTOCOLS: tuple[str, ...] = ("legacy", "official")


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; expected {' or '.join(PROTOCOLS)} (legacy: our ET/TC/WT "
                        "Dice and HD95; official: the BraTS package's lesion-wise metrics)")


#: Each protocol's own files in an evaluation folder (they share it; report.html is drawn from both), its summary first.
PROTOCOL_FILES = {"legacy": ("summary.json", "metrics.csv", "dice_boxplot.png"),
                  "official": ("official_summary.json", "official.csv", "official_mets.csv", "official_panoptica.json")}

#: The files an evaluation writes into its folder (both protocols, the pictures, the report).
EVALUATION_FILES = (*PROTOCOL_FILES["legacy"], *PROTOCOL_FILES["official"], "report.html")
#: What an evaluation writes or replaces in its folder (`claim_output`'s ``writes``): its files and pictures.
EVALUATION_OUTPUTS = (*EVALUATION_FILES, f"{OVERLAYS}/*.png")


def stale_tables(out_dir: str | os.PathLike, protocol: str, state: str) -> list[Path]:
    """The other protocol's files in ``out_dir`` when its summary records other inputs than ``state``
    (`pipeline.evaluation.reference.CasePairs.inputs_state`: the same folders, but predictions or labels rewritten
    since, e.g. by ``infer --overwrite``): scored from files that are no longer there, they go with this
    evaluation's success (`replaced_on_success`), not left beside its new tables. A summary from before the state
    was recorded is left (nothing says it is stale)."""
    out, other = Path(out_dir), "official" if protocol == "legacy" else "legacy"
    try:
        recorded = read_json(out / PROTOCOL_FILES[other][0]).get("inputs_state")
    except (OSError, ValueError, AttributeError):
        return []
    if recorded is None or recorded == state:
        return []
    logger.info("%s: the %s tables were scored from files rewritten since: they go once this evaluation is "
                "written", out, other)
    stale = [out / name for name in PROTOCOL_FILES[other]]
    return stale + (drawn_overlays(out) if other == "legacy" else [])


def _root(folder: str | os.PathLike | Reference) -> str:
    return os.path.realpath(folder.root if isinstance(folder, Reference) else os.fspath(folder))


def check_replacement(out_dir: str | os.PathLike, pred_dir: str | os.PathLike, ref_dir: str | os.PathLike | Reference,
                      *, overwrite: bool | str = False, out_option: str = "--out", scheme: str | None = None,
                      cases: Sequence[str] | None = None, challenge: str | None = None) -> list[Path]:
    """Refuse to write an evaluation into a folder that holds the evaluation of other predictions, another
    reference, (``scheme``, resolved) another scheme, (``cases``) other cases, a fold's say, or (``challenge``,
    resolved; the official protocol's) another challenge's settings: an evaluation never silently replaces another
    (the legacy and official protocols of one evaluation share a folder). With ``overwrite`` returns that one's
    files, which `evaluate` deletes once the new evaluation has been written (`replaced_on_success`: a refused one
    leaves them); else ``[]``.

    Raises:
        UserError: ``out_dir`` holds another evaluation and not ``overwrite`` (naming both, and the way out).
    """
    record = evaluation_record(out_dir)
    if record is None:
        return []
    old_pred, old_ref, old_scheme = record["predictions"] or "", record["reference"], record.get("scheme")
    same_pred = not old_pred or os.path.realpath(old_pred) == _root(pred_dir)
    same_scheme = scheme is None or old_scheme is None or str(old_scheme) == str(scheme)
    same_cases = cases is None or record.get("cases") is None or sorted(record["cases"]) == sorted(cases)
    old_challenge = record.get("challenge")
    same_challenge = challenge is None or old_challenge is None or str(old_challenge) == str(challenge)
    if same_pred and os.path.realpath(old_ref) == _root(ref_dir) and same_scheme and same_cases and same_challenge:
        return []
    if not as_bool(overwrite, "overwrite"):
        scored = ("" if same_scheme else f" in scheme {old_scheme}") + (
            "" if same_cases else f" on {len(record['cases'])} case(s)") + (
            "" if same_challenge else f" with challenge {old_challenge}'s settings")
        asked = ("" if same_scheme else f" in scheme {scheme}") + (
            "" if same_cases else f" on {len(cases)} case(s)") + (
            "" if same_challenge else f" with challenge {challenge}'s")
        raise UserError(f"{out_dir} holds the evaluation of {old_pred or 'other predictions'} against {old_ref}"
                        f"{scored}; this one scores {os.fspath(pred_dir)} against {_root(ref_dir)}{asked}: pass "
                        f"another {out_option} (one folder per evaluation), or --overwrite to replace it")
    out = Path(out_dir)
    logger.info("%s: replacing the evaluation of %s against %s (--overwrite)", out_dir, old_pred, old_ref)
    return [out / name for name in EVALUATION_FILES] + drawn_overlays(out)  # a user's picture there stays


@holding
def evaluate(protocol: str, pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
             scheme: str = "auto", cases: Sequence[str] | None = None, challenge: str | None = None, jobs: int = 1,
             out_option: str = "--eval_dir", allow_mixed: bool | str = False, overwrite: bool | str = False) -> dict:
    """The evaluation of ``protocol``: ``legacy`` (`pipeline.evaluation.regions.evaluate_folders`: metrics.csv,
    summary.json) or ``official`` (`evaluate_official`: official.csv, official_summary.json), into a folder that
    holds no other evaluation (`check_replacement`)."""
    check_protocol(protocol)
    if protocol == "legacy" and challenge is not None:
        raise UserError(f"challenge {challenge!r} applies to the official protocol only: pass --protocol official "
                        "(bundle: --protocol official), or leave the challenge out")
    resolved, scored, key = None, None, None
    # the folders and pairs are checked (the output folder apart from every input) before the output folder is
    # held and before --overwrite deletes anything; paired once, the scorers take the pairs
    pairs = pair_cases(pred_dir, ref_dir, out_dir, cases, out_option=out_option, allow_mixed=allow_mixed)
    reference = ref_dir = pairs.reference  # as recorded: a datalist's is the folder of its labels, not the JSON file
    if evaluated_pair(out_dir) is not None:
        resolved, scored = pairs.scoring_scheme(scheme), sorted(pairs.refs)
        key = resolve_challenge(challenge, resolved, scored) if protocol == "official" else None
    claim_output(out_dir, "evaluation", out_option, writes=EVALUATION_OUTPUTS, overwrite=overwrite)
    old = check_replacement(out_dir, pred_dir, reference, overwrite=overwrite, out_option=out_option,
                            scheme=resolved, cases=scored, challenge=key)
    old += stale_tables(out_dir, protocol, pairs.inputs_state())  # the same pair, its files rewritten since
    # the old evaluation goes once the new one is written, not before; a failed one leaves no new file behind
    with replaced_on_success(old, folders=[out_dir]):
        if protocol == "legacy":
            summary = evaluate_folders(pred_dir, ref_dir, out_dir, scheme=scheme, cases=cases, out_option=out_option,
                                       allow_mixed=allow_mixed, pairs=pairs)
            if drawn_picture(Path(out_dir) / "dice_boxplot.png"):  # of the scores just replaced: drawn again (a user's
                (Path(out_dir) / "dice_boxplot.png").unlink()   # picture of the name stays)
            for png in drawn_overlays(out_dir):  # (or not, --no-pictures) from the new ones; a user's picture stays
                png.unlink()
            return summary
        return evaluate_official(pred_dir, ref_dir, out_dir, scheme=scheme, challenge=challenge, jobs=jobs,
                                 cases=cases, out_option=out_option, allow_mixed=allow_mixed, pairs=pairs)


def format_summary(summary: dict) -> str:
    """The table of either protocol's summary (`format_official_table` or the legacy ``format_table``)."""
    return format_official_table(summary) if summary.get("protocol") == "official" else format_table(summary)


def plots(protocol: str, eval_dir: str | os.PathLike, pred_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
          scheme: str = "auto") -> list[Path]:
    """The legacy evaluation's pictures (`pipeline.evaluation.plots.plot_evaluation`); none for the official protocol,
    whose table has no per-region Dice of ours to rank cases by (run the legacy protocol for pictures)."""
    check_protocol(protocol)
    if protocol == "official":
        logger.info("no pictures for --protocol official; the legacy protocol draws them (metrics.csv)")
        return []

    return plot_evaluation(eval_dir, pred_dir, dataset_dir, scheme=scheme)


@holding
def write_report(eval_dir: str | os.PathLike, name: str | None = None) -> Path:
    """``EVAL_DIR/report.html`` from what the folder holds: the legacy protocol's summary, per-case table, box plot
    and overlays (worst, median, best), the official protocol's table; each protocol present gets its section.
    The folder is held while the report is written (an evaluation writing there meanwhile is refused)."""
    out = Path(eval_dir)
    legacy, official = out / "summary.json", out / "official_summary.json"
    if not legacy.is_file() and not official.is_file():
        raise UserError(f"no evaluation in {out}: run python -m pipeline evaluate PRED REF --out {out} first")
    hold_folder(out, what="evaluation report")
    first = read_json(legacy if legacy.is_file() else official)
    name = name or run_name(first.get("predictions") or out)
    report = Report(f"{name} on {Path(first['reference']).name}")
    report.paragraph(f"Predictions: {first.get('predictions', '?')}. Reference: {first['reference']} "
                     f"({first.get('reference_layout', '?')}, scheme {first.get('scheme', '?')}).", note=True)
    if legacy.is_file():
        summary = read_json(legacy)
        regions = list(summary["regions"])
        report.heading("Legacy protocol: Dice, sensitivity, specificity, HD95 per region (docs/metrics.md)")
        metrics = ("dice", "sensitivity", "specificity", "hd95")
        report.table(["region", *[f"{m} {s}" for m in metrics for s in ("mean", "median")]],
                     [[r, *[summary["regions"][r][m][s] for m in metrics for s in ("mean", "median")]]
                      for r in regions], sortable=False)
        mean = [line for line in format_table(summary).splitlines() if line.startswith("mean Dice over regions")]
        report.paragraph(mean[0] if mean else "", note=True)
        rows = read_table(out / "metrics.csv", ("case", "region", "dice", "hd95"), METRICS_TABLE)
        numbers = {k: column_numbers(rows, k, out / "metrics.csv") for k in ("dice", "hd95")}
        by_case: dict[str, dict[str, dict[str, float]]] = {}
        for i, row in enumerate(rows):
            by_case.setdefault(row["case"], {})[row["region"]] = {k: numbers[k][i] for k in numbers}
        report.heading("Per case (click a column to sort)")
        table = []
        for case, per in by_case.items():
            dice = [per[r]["dice"] for r in regions if r in per]
            table.append([case, sum(dice) / len(dice) if dice else None,
                          *[per[r]["dice"] if r in per else None for r in regions],
                          *[per[r]["hd95"] if r in per and not math.isnan(per[r]["hd95"]) else None for r in regions]])
        report.table(["case", "mean Dice", *[f"Dice {r}" for r in regions], *[f"HD95 {r}" for r in regions]], table)
        report.heading("Pictures")
        pictures = [(out / "dice_boxplot.png", "Dice per region, one dot per case")]
        means = {row[0]: row[1] for row in table if row[1] is not None}
        ranked = sorted(means, key=means.get)  # worst first
        overlays = {p.stem: p for p in drawn_overlays(out)}
        pictures += [(overlays[c], f"{c}: rank {len(ranked) - ranked.index(c)} of {len(ranked)}, mean Dice "
                      f"{means[c]:.3f}") for c in ranked if c in overlays]
        report.pictures(pictures)
    if official.is_file():
        summary = read_json(official)
        report.heading(f"Official protocol: the BraTS package, challenge {summary.get('challenge')}")
        report.preformatted(format_official_table(summary))
    return report.write(out / "report.html")
