"""Several algorithms on one reference: one table, a ranking as the BraTS challenge ranks, paired tests, a grouped
box plot and a report.

`compare` evaluates each prediction folder with the legacy protocol into ``OUT/<name>/`` (and, with
``official``, the BraTS package's protocol beside it), then writes ``comparison.csv`` (per algorithm: mean and
median Dice per region, mean HD95, lesion-wise Dice where available), ``ranking.csv`` (each case, region and metric
ranks the algorithms, Dice high and HD95 low first, ties sharing their mean rank; an algorithm's score is the mean
of its ranks, as BraTS ranks), ``wilcoxon.csv`` (paired Wilcoxon signed-rank tests of the per-case mean Dice
between neighbours in the ranking), ``comparison_boxplot.png`` and ``report.html``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata, wilcoxon

from pipeline.core.errors import UserError
from pipeline.core.figures import plt, save_figure
from pipeline.core.files import (
    FolderLock,
    atomic_write_text,
    column_numbers,
    holding,
    read_json,
    read_table,
    replaced_on_success,
)
from pipeline.core.nifti import nifti_files
from pipeline.evaluation.evaluate import EVALUATION_OUTPUTS, evaluate
from pipeline.evaluation.metrics import region_metrics
from pipeline.evaluation.plots import run_name
from pipeline.evaluation.reference import claim_output, read_reference
from pipeline.evaluation.regions import METRICS_TABLE, summarize
from pipeline.evaluation.report import Report

#: The metrics that rank: (column of metrics.csv, higher is better)
RANKED = (("dice", True), ("hd95", False))


def algorithm_names(pred_dirs: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> list[str]:
    """One unique name per prediction folder: ``names`` as given, else `run_name` of each (``run/seg``), numbered
    where two folders share a name."""
    if names is not None:
        if len(names) != len(pred_dirs) or len(set(names)) != len(names):
            raise UserError(f"--names needs {len(pred_dirs)} different names, one per prediction folder, got "
                            f"{list(names)}")
        for name in names:  # each is a folder of the output: OUT/<name>/
            if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or os.path.isabs(name):
                raise UserError(f"--names {name!r}: each name becomes the folder OUT/<name> of that algorithm's "
                                "evaluation; give plain names without a path (e.g. unet segresnet)")
        return list(names)
    base = [run_name(p).replace("/", "_") for p in pred_dirs]
    return [b if base.count(b) == 1 else f"{b}_{base[:i + 1].count(b)}" for i, b in enumerate(base)]


def read_metrics(metrics_csv: str | os.PathLike) -> dict[str, dict[str, dict[str, float]]]:
    """``{case: {region: {metric: value}}}`` of an evaluation's ``metrics.csv``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    rows = read_table(metrics_csv, ("case", "region"), METRICS_TABLE)
    metrics = [k for k in (rows[0] if rows else {}) if k not in ("case", "region")]
    values = {k: column_numbers(rows, k, metrics_csv) for k in metrics}
    for i, row in enumerate(rows):
        out.setdefault(row["case"], {})[row["region"]] = {k: values[k][i] for k in metrics}
    return out


def brats_ranking(scores: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, float]:
    """``{algorithm: mean rank}``, best first: for each case and region any algorithm was scored on, and each
    metric of `RANKED`, the algorithms are ranked (1 best; ties share their mean rank; a missing or NaN value ranks
    last), and each algorithm's ranks are averaged, as the BraTS challenges rank."""
    algorithms = list(scores)
    cells = {case: dict.fromkeys(r for a in algorithms for r in scores[a].get(case, {}))
             for case in dict.fromkeys(c for a in algorithms for c in scores[a])}
    ranks: dict[str, list[float]] = {a: [] for a in algorithms}
    for case, regions in cells.items():
        for region in regions:
            for metric, higher in RANKED:
                values = []
                for a in algorithms:
                    v = scores[a].get(case, {}).get(region, {}).get(metric, math.nan)
                    values.append(-math.inf if math.isnan(v) and higher else math.inf if math.isnan(v) else v)
                r = rankdata([-v for v in values] if higher else values, method="average")
                for a, rank in zip(algorithms, r, strict=True):
                    ranks[a].append(float(rank))
    mean = {a: float(np.mean(r)) if r else math.nan for a, r in ranks.items()}
    return dict(sorted(mean.items(), key=lambda kv: kv[1]))


def _score_absent_labels(scores: dict[str, dict[str, dict[str, dict[str, float]]]],
                         scored: dict[str, Sequence[str]]) -> list[str]:
    """Under ``--scheme labels`` each evaluation scores, per case, the values its prediction or the reference holds,
    so algorithms differ in what they were scored on. A value that some algorithm was scored on and another was
    not, in a case, is in neither that algorithm's prediction nor the reference: it is scored as both empty (the
    BraTS rule of `region_metrics`: Dice 1, HD95 0), in place; so is every value of a case an algorithm's
    evaluation scored (``scored``: its ``case_ids``) but wrote no row for, both files holding no label (a correct
    empty answer, which would otherwise count as missing and rank last). Returns every value's region, in value
    order."""
    regions = sorted({r for per_case in scores.values() for m in per_case.values() for r in m},
                     key=lambda n: int(n.split("_", 1)[1]))
    empty = torch.zeros((1, 1, 1, 1), dtype=torch.bool)
    both_empty = {k: float(v) for k, v in region_metrics(empty, empty)[0].items()}
    for name, per_case in scores.items():
        for case in scored.get(name, ()):
            per_case.setdefault(str(case), {})
        for metrics in per_case.values():
            for region in regions:
                metrics.setdefault(region, dict(both_empty))
    return regions


def _region_table(per_case: dict[str, dict[str, dict[str, float]]], regions: Sequence[str]) -> dict:
    """``{"regions": {region: {metric: stats}}, "mean_dice"}`` of per-case scores, as `summarize` writes them."""
    rows = [{"region": r, **m} for metrics in per_case.values() for r, m in metrics.items() if r in regions]
    summary = summarize(rows, "labels", len(per_case))
    return {"regions": summary["regions"], "mean_dice": summary["mean_dice"]}


def case_means(per_case: dict[str, dict[str, dict[str, float]]], cases: Sequence[str]) -> np.ndarray:
    """The mean Dice over regions of each of ``cases`` (NaN where a case is missing)."""
    return np.array([np.mean([m["dice"] for m in per_case[c].values()]) if c in per_case else math.nan
                     for c in cases])


def paired_tests(scores: dict, order: Sequence[str]) -> list[dict]:
    """Wilcoxon signed-rank tests (two-sided) of the per-case mean Dice of each algorithm against the next in
    ``order``, on the cases both have; identical scores give p = 1."""
    tests = []
    cases = sorted(set.intersection(*(set(scores[a]) for a in order)))
    for a, b in zip(order, order[1:], strict=False):
        x, y = case_means(scores[a], cases), case_means(scores[b], cases)
        keep = ~(np.isnan(x) | np.isnan(y))
        x, y = x[keep], y[keep]
        if len(x) == 0 or np.allclose(x, y):
            stat, p = 0.0, 1.0
        else:
            result = wilcoxon(x, y, alternative="two-sided")
            stat, p = float(result.statistic), float(result.pvalue)
        tests.append({"better": a, "worse": b, "n": int(len(x)),
                      "n_differing": int(np.count_nonzero(~np.isclose(x, y))),  # what the test ranks (SciPy's
                      "mean_difference": float(np.mean(x - y)) if len(x)     # "wilcox" drops zero differences)
                      else math.nan, "statistic": stat, "p_value": p})
    return tests


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    lines = [",".join(columns)] + [",".join("" if v is None else (repr(v) if isinstance(v, float) else str(v))
                                            for v in row) for row in rows]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def grouped_boxplot(scores: dict, regions: Sequence[str], out_png: Path, title: str) -> Path:
    """Dice per region (groups) and algorithm (boxes side by side, one colour each), one dot per case."""
    algorithms = list(scores)
    cycle = plt.get_cmap("tab10").colors
    width = 0.8 / len(algorithms)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(regions) * len(algorithms) * 0.6 + 2), 4.5))
    rng = np.random.default_rng(0)
    for k, a in enumerate(algorithms):
        data = [[m[r]["dice"] for m in scores[a].values() if r in m] for r in regions]
        positions = [i + 1 - 0.4 + width * (k + 0.5) for i in range(len(regions))]
        box = ax.boxplot(data, positions=positions, widths=width * 0.85, showfliers=False, patch_artist=True)
        for patch in box["boxes"]:
            patch.set(facecolor=cycle[k % len(cycle)], alpha=0.35)
        for pos, values in zip(positions, data, strict=True):
            ax.scatter(pos + rng.uniform(-width / 4, width / 4, len(values)), values, s=9,
                       color=cycle[k % len(cycle)], edgecolors="black", linewidths=0.3, zorder=3)
        ax.plot([], [], "s", color=cycle[k % len(cycle)], label=a)
    ax.set_xticks(range(1, len(regions) + 1), regions)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Dice")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title)
    return save_figure(fig, out_png, dpi=150)


def _output_folders(ref_dir: str | os.PathLike, pred_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                    names: Sequence[str], overwrite: bool = False) -> Path:
    """``out_dir`` (resolved) once it and every ``out_dir/<name>`` keep clear of the reference and of *every*
    prediction folder (each evaluation guards its own folders only), before anything is scored.

    Raises:
        UserError: an output folder that is, lies inside or holds an input (the option to change named).
    """
    reference = read_reference(ref_dir)
    folders = [Path(p).expanduser() for p in pred_dirs]
    predictions = [f for p in folders if p.is_dir() for f in nifti_files(p).values()]
    guard = reference.guard(predictions, folders)
    out = guard.folder(out_dir, what="the comparison", option="--out")
    for name in names:
        guard.folder(out / name, what=f"the evaluation of {name}", option="--out or --names")
    # held once it is known to keep clear of every input; a folder of the user's own files of those names refused
    claim_output(out, "comparison", writes=COMPARISON_FILES, overwrite=overwrite)
    for name in names:  # and each algorithm's evaluation folder: no other process writes one while this compares
        claim_output(out / name, "evaluation", "--out or --names", writes=EVALUATION_OUTPUTS, overwrite=overwrite)
    return out


#: The files a comparison writes at the top of its folder (each algorithm's evaluation is in its sub-folder).
COMPARISON_FILES = ("comparison.json", "comparison.csv", "ranking.csv", "wilcoxon.csv", "comparison_boxplot.png",
                    "report.html")


def check_comparison_replacement(out: Path, ref_dir: str | os.PathLike, algorithms: dict[str, str], *,
                                 overwrite: bool = False) -> list[Path]:
    """Refuse to write a comparison into a folder that holds one of other algorithms (names or folders) or another
    reference, as an evaluation refuses another's folder (`pipeline.evaluation.evaluate.check_replacement`); the
    same comparison again is fine. With ``overwrite`` returns the old comparison's own files (`COMPARISON_FILES`),
    which `compare` deletes once the new one is written (`replaced_on_success`); else ``[]``.

    Raises:
        UserError: ``out`` holds another comparison and not ``overwrite`` (both named, and the way out).
    """
    try:
        old = read_json(out / "comparison.json")
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict):
        return []
    before = {str(n): os.path.realpath(str(p)) for n, p in (old.get("algorithms") or {}).items()}
    now = {n: os.path.realpath(p) for n, p in algorithms.items()}
    same_ref = os.path.realpath(str(old.get("reference", ""))) == os.path.realpath(os.fspath(ref_dir))
    if before == now and same_ref:
        return []
    if not overwrite:
        raise UserError(f"{out} holds the comparison of {', '.join(before) or 'other algorithms'} against "
                        f"{old.get('reference')}; this one compares {', '.join(now)} against "
                        f"{os.path.realpath(os.fspath(ref_dir))}: pass another --out (one folder per comparison), or "
                        "--overwrite to replace it")
    return [out / name for name in COMPARISON_FILES]


@holding
def compare(ref_dir: str | os.PathLike, pred_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
            names: Sequence[str] | None = None, scheme: str = "auto", official: bool = False,
            challenge: str | None = None, allow_mixed: bool = False, overwrite: bool = False) -> dict:
    """Evaluate every folder of ``pred_dirs`` against ``ref_dir`` and compare them (the module docstring).

    Returns ``{"algorithms", "table", "ranking", "tests", "files"}`` (also written as ``comparison.json``).

    Raises:
        UserError: fewer than two folders, names that are not unique, or any refusal of the evaluation (a
            folder overlapping the reference, no prediction, labels outside the scheme).
    """
    if len(pred_dirs) < 2:
        raise UserError(f"compare needs two or more prediction folders, got {len(pred_dirs)}")
    seen: dict[str, str | os.PathLike] = {}
    for pred in pred_dirs:  # by resolved folder: a link to another algorithm's folder is that algorithm
        real = os.path.realpath(os.path.expanduser(os.fspath(pred)))
        if real in seen:
            raise UserError(f"{pred} and {seen[real]} are one folder ({real}): a comparison would rank an algorithm "
                            "against itself; pass each algorithm's own prediction folder once")
        seen[real] = pred
    names = algorithm_names(pred_dirs, names)
    out = _output_folders(ref_dir, pred_dirs, out_dir, names, overwrite)
    given = {n: os.fspath(p) for n, p in zip(names, pred_dirs, strict=True)}
    old = check_comparison_replacement(out, ref_dir, given, overwrite=overwrite)
    folders = [out / name for name in names]
    evaluations = [f for folder in folders for f in sorted(folder.rglob("*"))  # (a lock is its holder's)
                   if f.is_file() and f.name != FolderLock.NAME]
    # the old comparison goes once the new one is written, not before; each algorithm's evaluation replaces its own
    # folder as it is scored, and all of them come back as they were if a later algorithm is refused
    own = [out / name for name in COMPARISON_FILES]  # the same comparison again: its tables come back on a refusal
    # (the new files of a comparison that fails, its top-level tables too, go: none is left without comparison.json)
    with replaced_on_success(old, restore=[*evaluations, *own], folders=[out]):
        return _compare(ref_dir, pred_dirs, out, names, scheme=scheme, official=official, challenge=challenge,
                        allow_mixed=allow_mixed, overwrite=overwrite)


def _compare(ref_dir: str | os.PathLike, pred_dirs: Sequence[str | os.PathLike], out: Path, names: Sequence[str], *,
             scheme: str, official: bool, challenge: str | None, allow_mixed: bool, overwrite: bool) -> dict:
    """`compare` past its checks: evaluate each folder into ``out/<name>``, then the table, ranking, tests, box
    plot, report and ``comparison.json``."""
    scores, summaries, officials = {}, {}, {}
    for name, pred in zip(names, pred_dirs, strict=True):
        print(f"evaluating {name}: {pred}", flush=True)
        summaries[name] = evaluate("legacy", pred, ref_dir, out / name, scheme=scheme, out_option="--out",
                                   allow_mixed=allow_mixed, overwrite=overwrite)
        scores[name] = read_metrics(out / name / "metrics.csv")
        if official:
            officials[name] = evaluate("official", pred, ref_dir, out / name, scheme=scheme, challenge=challenge,
                                       out_option="--out", allow_mixed=allow_mixed, overwrite=overwrite)
    if next(iter(summaries.values()))["scheme"] == "labels":  # every algorithm on every value: the same regions
        regions = _score_absent_labels(scores, {n: s.get("case_ids") or () for n, s in summaries.items()})
        summaries = {n: {**s, **_region_table(scores[n], regions)} for n, s in summaries.items()}
    else:
        regions = list(next(iter(summaries.values()))["regions"])
    ranking = brats_ranking(scores)
    order = list(ranking)
    tests = paired_tests(scores, order)

    columns = ["algorithm", "rank", "mean rank", "mean Dice", "median of case means"]
    columns += [f"Dice {r}" for r in regions] + [f"median Dice {r}" for r in regions]
    columns += [f"HD95 {r} (mm)" for r in regions] + ["cases", "missing"]
    official_regions = sorted({r for s in officials.values() for r in s.get("table", {})})
    columns += [f"LW Dice {r.upper()}" for r in official_regions]
    table = []
    for position, name in enumerate(order, start=1):
        s = summaries[name]
        means = case_means(scores[name], sorted(scores[name]))
        row = [name, position, ranking[name], s["mean_dice"], float(np.nanmedian(means)) if len(means) else math.nan]
        row += [s["regions"][r]["dice"]["mean"] for r in regions]
        row += [s["regions"][r]["dice"]["median"] for r in regions]
        row += [s["regions"][r]["hd95"]["mean"] for r in regions]
        row += [s["cases"], s["n_missing_predictions"]]
        row += [officials.get(name, {}).get("table", {}).get(r, {}).get("lesionwise_dsc_mean", {}).get("mean")
                for r in official_regions]
        table.append(row)

    files = {"table": _write_csv(out / "comparison.csv", columns, table),
             "ranking": _write_csv(out / "ranking.csv", ["algorithm", "mean rank"],
                                   [[a, r] for a, r in ranking.items()]),
             "tests": _write_csv(out / "wilcoxon.csv", ["better", "worse", "n", "n_differing", "mean_difference",
                                                        "statistic", "p_value"], [list(t.values()) for t in tests])}
    title = f"{len(names)} algorithms on {Path(ref_dir).resolve().name}"
    files["boxplot"] = grouped_boxplot(scores, regions, out / "comparison_boxplot.png", title)
    result = {"algorithms": {n: str(Path(p).resolve()) for n, p in zip(names, pred_dirs, strict=True)},
              "reference": str(Path(ref_dir).resolve()), "columns": columns, "table": table, "ranking": ranking,
              "tests": tests, "files": {k: str(v) for k, v in files.items()}}
    files["report"] = comparison_report(result, out, regions, scores)
    result["files"]["report"] = str(files["report"])
    atomic_write_text(out / "comparison.json", json.dumps(result, indent=1, default=float))
    return result


def comparison_report(result: dict, out: Path, regions: Sequence[str], scores: dict) -> Path:
    """``OUT/report.html``: the table, the ranking, the tests, the box plot and the per-case mean Dice."""
    report = Report(f"Comparison of {len(result['algorithms'])} algorithms on {Path(result['reference']).name}")
    report.paragraph(f"Reference: {result['reference']}. Legacy protocol (our ET/TC/WT Dice and HD95, "
                     "docs/metrics.md); each algorithm's own evaluation is in its sub-folder.", note=True)
    report.heading("Table")
    report.table(result["columns"], result["table"])
    report.heading("Ranking")
    report.paragraph("Each case, region and metric (Dice: higher first; HD95: lower first) ranks the algorithms, "
                     "ties sharing their mean rank; an algorithm's score is the mean of its ranks, as the BraTS "
                     "challenges rank.", note=True)
    report.table(["algorithm", "mean rank"], [[a, r] for a, r in result["ranking"].items()])
    report.heading("Paired tests")
    report.paragraph("Wilcoxon signed-rank test (two-sided) of the per-case mean Dice, each algorithm against the "
                     "next in the ranking, on the cases both have; cases scored alike are dropped by the test (SciPy's "
                     "zero_method 'wilcox').", note=True)
    report.table(["better", "worse", "n", "n differing (what the test ranks)", "mean difference", "statistic",
                  "p value"],
                 [list(t.values()) for t in result["tests"]])
    report.heading("Dice per region")
    report.pictures([(result["files"]["boxplot"], "Dice per region and algorithm, one dot per case")])
    report.heading("Per case")
    algorithms = list(result["algorithms"])
    cases = sorted(set().union(*(set(scores[a]) for a in algorithms)))
    rows = [[c, *[float(case_means(scores[a], [c])[0]) for a in algorithms]] for c in cases]
    report.table(["case", *[f"{a} mean Dice" for a in algorithms]], rows)
    return report.write(out / "report.html")
