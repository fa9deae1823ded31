"""The official BraTS evaluation: lesion-wise metrics computed by the challenge's own package (brats-evaluation).

Every case is scored by the package's per-exam function with the package's bundled config of the challenge, and
the table is written by the package's own parser, chained as its command line chains them. Ours: pairing by our
layouts (`pipeline.evaluation.reference`), the label numbering converted to the challenge's
(`official_label_map`, from `pipeline.data.labels.NUMBERING`), a case the package cannot score refused in one
line. The files written, the conventions and the differences from our protocol: `docs/metrics.md`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import yaml

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_text
from pipeline.core.nifti import load_labels
from pipeline.data.labels import LABEL_SCHEMES, NNUNET_PREFIX, NUMBERING
from pipeline.evaluation.reference import CasePairs, on_reference_grid, pair_cases
from pipeline.evaluation.regions import label_values_problem

logger = logging.getLogger(__name__)


#: ``--challenge`` -> the name of the package's bundled config (``config_<name>.yaml``; its names are case-sensitive).
CHALLENGES: dict[str, str] = {
    "gli": "gli", "mets": "mets", "ped": "ped", "menrt": "MenRT", "menpre": "MenPre", "goat": "GoAT",
}

#: Tumour class -> label value in each challenge's numbering (the label groups of its bundled config), from the one
#: numbering table (`pipeline.data.labels.NUMBERING`, ``challenge <name>``).
CHALLENGE_NUMBERING: dict[str, dict[str, int]] = {c: NUMBERING[f"challenge {c}"] for c in CHALLENGES}

#: Our label schemes (`pipeline.data.labels.LABEL_SCHEMES`) -> {value: class}.
SCHEME_CLASSES: dict[str, dict[int, str]] = {s: {v: c for c, v in lab.items()} for s, lab in LABEL_SCHEMES.items()}

#: Label schemes `evaluate_official` accepts (``auto``: the reference dataset's layout's).
OFFICIAL_SCHEMES: tuple[str, ...] = ("auto", *SCHEME_CLASSES)

#: ``--challenge`` when none is given: ``ped`` for the ``ped`` scheme (BraTS-PED 2024+'s own numbering, the ped
#: config's: the identity); ``gli`` for every other scheme, which numbers adult glioma (MSD Task01 is BraTS 2016/2017
#: data): the adult-glioma challenge, whose config scores ET, TC, WT plus NETC, SNFH and RC.
DEFAULT_CHALLENGE: dict[str, str] = {s: "ped" if s == "ped" else "gli" for s in SCHEME_CLASSES}

#: The package CLI's defaults for ``brats-parse-metrics mets``: lesion volume (mm³) from which a lesion is
#: "large", and the Dice from which a small lesion counts as detected.
METS_VOLUME_THRESHOLD: float = 20.0
METS_OVERLAP_THRESHOLD: float = 0.1

#: Region order of the printed table: BraTS papers' ET, TC, WT first, then the config's other groups.
PAPER_ORDER: tuple[str, ...] = ("et", "tc", "wt")

#: Metric columns of the package's parsers, ``<stem>_<region>``.
SEG_STEMS: tuple[str, ...] = (
    "all_instance_tp", "all_instance_fp", "all_instance_fn", "all_instance_prec", "all_instance_rec",
    "all_instance_f1", "global_dsc", "global_nsd", "global_hd95", "lesionwise_dsc_mean", "lesionwise_dsc_std",
    "lesionwise_nsd_mean", "lesionwise_nsd_std", "lesionwise_hd95_mean", "lesionwise_hd95_std",
)

#: The printed table's value of an unreachable distance (the package's ``inf``: no lesion matched): what its parser
#: gives a missing prediction's HD95, 373 mm (brats_evaluation 0.0.10, ``metrics_parser.py``: "diameter of the cube
#: in SRI space"), so that an empty prediction and a missing one score alike in one column. (The legacy protocol's
#: own penalty, `pipeline.evaluation.metrics.HD95_EMPTY_PENALTY_MM`, is the BraTS 2021 evaluation's 373.13.)
UNREACHABLE_MM: float = 373.0

#: Rows the package's parser appends after the cases.
STAT_ROWS: tuple[str, ...] = ("mean", "std", "median")

CONVENTIONS: dict[str, str] = {
    "lesions": "26-connected components (cc3d) of each region, matched one-to-one by Dice > 1e-6 "
               "(maximum bipartite matching); computed by panoptica with the package's config",
    "lesionwise_dsc_mean": "mean Dice over the matched lesions (panoptica sq_dsc); no lesion matched -> 0; "
                           "no lesion in either -> NaN",
    "lesionwise_hd95_mean": "mean HD95 over the matched lesions; no lesion matched -> inf; no lesion in either -> NaN",
    "all_instance_f1": "lesion detection F1 = 2TP / (2TP + FP + FN) (panoptica rq)",
    "global_dsc": "Dice of the whole region (the legacy Dice), NaN when both are empty",
    "lesionwise_spacing": "the package pairs SimpleITK's (z, y, x) array with the (x, y, z) spacing it reads; the "
                          "files it is given carry their voxel sizes in reverse order, so each axis meets its own",
    "global_hd95": "95th percentile of both directed surface distances pooled, in voxels (no spacing); no "
                   "overlapping voxel (one empty, or disjoint) -> 373; both empty -> NaN",
    "global_nsd": "normalised surface Dice at 0.5 voxel, no spacing",
    "missing_prediction": "373 in every HD95 column but the standard deviations, 0 in every other column",
    "statistics": "mean, std (ddof 1) and median rows of pandas over the cases, NaN skipped",
}


# ----------------------------------------------------------------------------------------------------------------
# The package
# ----------------------------------------------------------------------------------------------------------------


def _package() -> Any:
    """The ``brats_evaluation`` module, or a refusal that says how to install it."""
    try:
        import brats_evaluation
        import panoptica  # noqa: F401
    except ImportError as err:
        raise UserError(
            f"--protocol official needs the packages brats-evaluation and panoptica ({err}); install them with: "
            "make extra-official (or pip install -e '.[official]')") from err
    return brats_evaluation


def package_versions() -> dict[str, str]:
    """``{"brats-evaluation": version, "panoptica": version}`` of the installed packages."""
    return {name: metadata.version(name) for name in ("brats-evaluation", "panoptica")}


_EVALUATORS: dict[str, Any] = {}


def official_evaluator(challenge: str) -> Any:
    """The package's ``Panoptica_Evaluator`` of ``challenge``, loaded from its bundled config once per process."""
    config = CHALLENGES[challenge]
    if config not in _EVALUATORS:
        package = _package()
        from panoptica import Panoptica_Evaluator

        _EVALUATORS[config] = Panoptica_Evaluator.load_from_config(str(package.config_path(config)))
    return _EVALUATORS[config]


class _TaggedLoader(yaml.SafeLoader):
    """A YAML loader that reads the package's tagged nodes (``!LabelGroup``, ...) as plain mappings and lists."""


_TaggedLoader.add_multi_constructor("!", lambda loader, _suffix, node: (
    loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
    else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
    else loader.construct_scalar(node)))


def config_groups(challenge: str) -> dict[str, tuple[int, ...]]:
    """``{group: its label values}`` of ``challenge``'s bundled config (the package's own YAML, e.g. gli: ``et``
    (3,), ``tc`` (1, 3), ``wt`` (1, 2, 3), ``netc`` (1,), ``snfh`` (2,), ``rc`` (4,))."""
    path = _package().config_path(CHALLENGES[challenge])
    config = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_TaggedLoader)  # noqa: S506 (a safe loader)
    groups = (config.get("segmentation_class_groups") or {}).get("groups") or {}
    return {name: tuple(int(v) for v in group.get("value_labels") or ()) for name, group in groups.items()}


def unnumbered_groups(challenge: str, mapping: dict[int, int]) -> list[str]:
    """The groups of ``challenge``'s config that no label of the scheme maps to (`official_label_map`): RC under
    ``brats`` (2018-2021), which has no resection cavity. The package scores them all the same (both empty: NaN;
    a missing prediction: its 0 / 373 fill), so they are left out of our tables rather than printed as a score."""
    numbered = set(mapping.values())
    return [g for g, values in config_groups(challenge).items() if values and not numbered & set(values)]


def json_default(x: Any) -> Any:
    """NumPy scalars -> Python numbers for ``json.dump`` of the package's per-exam dicts.

    panoptica counts voxels with ``np.count_nonzero``, which returns a NumPy integer from NumPy 2.3 on (a Python
    int before): the package's own CLI then fails writing its JSON. The values are the same.
    """
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"Object of type {type(x).__name__} is not JSON serializable")


# ----------------------------------------------------------------------------------------------------------------
# Label numbering
# ----------------------------------------------------------------------------------------------------------------


#: The challenge a BraTS 2023+ case id names (``BraTS-MET-00001-000``), longest prefix first; SSA is adult glioma.
CASE_CHALLENGES: tuple[tuple[str, str], ...] = (
    ("BraTS-MEN-RT-", "menrt"), ("BraTS-GLI-", "gli"), ("BraTS-SSA-", "gli"), ("BraTS-MET-", "mets"),
    ("BraTS-PED-", "ped"), ("BraTS-MEN-", "menpre"), ("BraTS-GoAT-", "goat"))


def challenge_of_cases(case_ids: Sequence[str]) -> str | None:
    """The challenge the case ids name (`CASE_CHALLENGES`), or None when none names one (BraTS 2021 ids, MSD's).

    Raises:
        UserError: ids that name two challenges (each is scored with its own settings: evaluate them apart).
    """
    found = {cid: next((c for prefix, c in CASE_CHALLENGES if str(cid).startswith(prefix)), None)
             for cid in case_ids}
    named = sorted({c for c in found.values() if c is not None})
    if len(named) > 1:
        examples = ", ".join(next(cid for cid, c in found.items() if c == key) for key in named)
        raise UserError(f"the cases name {len(named)} challenges ({', '.join(named)}: e.g. {examples}), each scored "
                        "with its own settings: evaluate each challenge's cases apart (--cases), or pass --challenge")
    return named[0] if named else None


def resolve_challenge(challenge: str | None, scheme: str, case_ids: Sequence[str] = ()) -> str:
    """``challenge`` in lower case; when None, the one the case ids name (`challenge_of_cases`: BraTS-MET-... is
    mets), else the default of ``scheme`` (`DEFAULT_CHALLENGE`)."""
    if challenge is None:
        return challenge_of_cases(case_ids) or DEFAULT_CHALLENGE.get(scheme, "gli")
    key = str(challenge).lower()
    if key not in CHALLENGES:
        raise UserError(f"unknown challenge {challenge!r}; the package brats-evaluation has configs for "
                        f"{', '.join(CHALLENGES)}: pass one of them to --challenge")
    return key


def _check_scheme(scheme: str) -> None:
    if scheme == "labels":
        raise UserError("--scheme labels cannot be scored by the official BraTS evaluation: it scores tumour regions "
                        "in a challenge's numbering; pass --scheme brats (ET 4), brats2023 (ET 3), brats2024 (ET 3, "
                        "RC 4), msd or ped (BraTS-PED 2024+: 1 ET, 2 NET, 3 CC, 4 ED), or use --protocol legacy for "
                        "label-wise numbers")
    if scheme not in OFFICIAL_SCHEMES:
        why = ("an nnU-Net dataset's own labels are not a BraTS challenge's numbering" if
               str(scheme).startswith(NNUNET_PREFIX) else "it is not a BraTS scheme")
        raise UserError(f"the official BraTS evaluation cannot score scheme {scheme!r}: {why}; pass --scheme "
                        f"{', '.join(OFFICIAL_SCHEMES)}, or use --protocol legacy")


def official_label_map(scheme: str, challenge: str | None = None) -> dict[int, int]:
    """``{our label value: the challenge's value}`` for a label map in ``scheme`` (background 0 stays 0).

    gli (and mets, goat, menpre): ``brats`` {1: 1, 2: 2, 4: 3}; ``brats2023`` {1: 1, 2: 2, 3: 3}; ``msd``
    {1: 2, 2: 1, 3: 3}; ``brats2024`` {1: 1, 2: 2, 3: 3, 4: 4}. ped (1 ET, 2 NETC, 3 CC, 4 ED): ``ped`` as is
    {1: 1, 2: 2, 3: 3, 4: 4}; ``brats2023`` (BraTS-PED 2023, harmonised with GLI) {1: 2, 2: 4, 3: 1}. Without
    ``challenge``: the scheme's default (`DEFAULT_CHALLENGE`: ped for ``ped``).

    Raises:
        UserError: ``labels``, an unknown scheme or challenge, or a class the challenge does not number (RC under
            ped, CC under any challenge but ped, anything under menrt).
    """
    _check_scheme(scheme)
    if scheme == "auto":
        raise UserError("official_label_map needs the resolved scheme, not auto")
    key = resolve_challenge(challenge, scheme)
    target = CHALLENGE_NUMBERING[key]
    classes = SCHEME_CLASSES[scheme]
    missing = [c for c in classes.values() if c not in target]
    if missing:
        numbered = ", ".join(f"{v} {c}" for c, v in sorted(target.items(), key=lambda kv: kv[1])) or "1 GTV only"
        raise UserError(f"challenge {key} numbers {numbered}: scheme {scheme}'s {', '.join(missing)} has no label "
                        f"there; pick the challenge of your data (--challenge {' | '.join(CHALLENGES)}; without it, "
                        "the case ids choose: BraTS-MET-... is mets)")
    return {v: target[c] for v, c in classes.items()}


def to_official(labels: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """A label map ``(H, W, D)`` renumbered by ``mapping`` (`official_label_map`), uint8; values checked first."""
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for ours, theirs in mapping.items():
        lut[ours] = theirs
    return lut[labels.astype(np.intp, copy=False)]


def _label_problem(values: Sequence[int], scheme: str, what: str, layout: str | None, case: str = "") -> str | None:
    if scheme in LABEL_SCHEMES:
        return label_values_problem(values, scheme, what, layout, official=True, case=case)
    allowed = {0, *SCHEME_CLASSES[scheme]}
    bad = sorted(set(values) - allowed)
    if not bad:
        return None
    return f"the {what} holds label value(s) {bad} that scheme {scheme!r} does not use (allowed {sorted(allowed)})"


def _checked_labels(data: np.ndarray, scheme: str, what: str, layout: str | None, case: str = "") -> np.ndarray:
    values = np.unique(data)
    if data.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise UserError(f"the {what} holds non-integer values: a label map is expected, threshold probabilities first")
    problem = _label_problem([int(v) for v in values], scheme, what, layout, case)
    if problem:
        raise UserError(problem)
    return data


# ----------------------------------------------------------------------------------------------------------------
# One case
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    case: str
    pred: Path
    ref: Path
    mapping: dict[int, int]
    challenge: str
    scheme: str
    layout: str | None
    tmp: Path


def _write_for_package(path: Path, data: np.ndarray, zooms: Sequence[float]) -> None:
    """``data`` ``(X, Y, Z)`` as the package must read it: its lesion-wise distances pair SimpleITK's ``(z, y, x)``
    array with the ``(x, y, z)`` spacing SimpleITK reads, so the file's voxel sizes are written in reverse order
    (z, y, x) and each array axis meets its own spacing (measured: `docs/metrics.md`)."""
    affine = np.diag([*[float(z) for z in reversed(list(zooms)[:3])], 1.0])
    image = nib.Nifti1Image(np.asarray(data, dtype=np.uint8), affine)
    image.set_data_dtype(np.uint8)
    nib.save(image, os.fspath(path))


def _score_case(task: _Task) -> dict:
    """The package's per-exam dict of one case (its ``evaluate_single_exam``), on the converted labels."""
    package = _package()
    ref, ref_affine, zooms = load_labels(task.ref)  # the spacing of the affine, as the legacy protocol's
    pred, pred_affine, _ = load_labels(task.pred)
    pred = on_reference_grid(task.case, pred, pred_affine, task.pred, ref, ref_affine, task.ref)
    where = f"case {task.case} (prediction {task.pred}, reference {task.ref})"
    try:
        ref = _checked_labels(ref, task.scheme, "reference", task.layout, task.case)  # the reference first: the fix
        pred = _checked_labels(pred, task.scheme, "prediction", task.layout, task.case)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    folder = Path(tempfile.mkdtemp(dir=task.tmp))  # the package wants the same suffixes: no case id in the names
    pred_file, ref_file = folder / "prediction.nii", folder / "reference.nii"
    try:
        _write_for_package(pred_file, to_official(pred, task.mapping), zooms)
        _write_for_package(ref_file, to_official(ref, task.mapping), zooms)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            # the package's global NSD has no spacing and warns that its 0.5 (voxel) threshold is a default
            warnings.filterwarnings("ignore", message="The threshold is set to 0.5", category=UserWarning)
            result = package.evaluate_single_exam(
                prediction_filepath=os.fspath(pred_file), reference_filepath=os.fspath(ref_file),
                subject_identifier=task.case, evaluator=official_evaluator(task.challenge))
    finally:
        pred_file.unlink(missing_ok=True)
        ref_file.unlink(missing_ok=True)
        folder.rmdir()
    if out.getvalue().strip():
        logger.debug("brats-evaluation, case %s: %s", task.case, out.getvalue().strip())
    if "error" in result:
        raise UserError(f"{where}: the official package could not score it: {result['error']}")
    return result


# ----------------------------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------------------------


def _read_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def _number(cell: str | None) -> float:
    """A CSV cell of the package's table -> float: empty -> NaN, ``inf`` -> infinity."""
    if cell is None or cell == "":
        return math.nan
    return float(cell)


def _statistics(columns: list[str], rows: list[dict[str, str]], regions: Sequence[str]) -> dict:
    """``{region: {stem: {"mean", "std", "median"}}}`` from the parser's statistic rows."""
    stats = {r["subject_id"]: r for r in rows if r["subject_id"] in STAT_ROWS}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in columns:
        region = next((g for g in sorted(regions, key=len, reverse=True) if column.endswith(f"_{g}")), None)
        if region is None:
            continue
        stem = column[: -len(region) - 1]
        out.setdefault(region, {})[stem] = {k: _number(stats[k].get(column)) if k in stats else math.nan
                                            for k in STAT_ROWS}
    return out


def _parse(package: Any, parser: str, raw_json: Path, tmp: Path, **kwargs: Any) -> str:
    """Run one of the package's parsers on ``raw_json``; the CSV text it writes (its output is logged at DEBUG)."""
    target = tmp / f"{parser}.csv"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pandas' std of a column holding inf
        getattr(package, parser)(json_path=os.fspath(raw_json), output_csv_path=os.fspath(target), **kwargs)
    logger.debug("brats-evaluation %s: %s", parser, out.getvalue().strip())
    if not target.is_file():
        raise UserError(f"the package's {parser} wrote no table from {raw_json}: {out.getvalue().strip()[-300:]}")
    return target.read_text(encoding="utf-8")


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _score_all(tasks: list[_Task], jobs: int) -> list[dict]:
    if jobs <= 1 or len(tasks) <= 1:
        return [_score_case(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        return list(pool.map(_score_case, tasks))


def evaluate_official(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    scheme: str = "auto",
    challenge: str | None = None,
    jobs: int = 1,
    cases: Sequence[str] | None = None,
    out_option: str = "--out",
    allow_mixed: bool | str = False,
    pairs: CasePairs | None = None,
) -> dict:
    """Score ``PRED_DIR/<case>.nii.gz`` against the reference with the official BraTS package (see the module doc);
    ``pairs``: the cases `pair_cases` already paired for these folders (None: paired here).

    Before anything is read or written, as in `pipeline.evaluation.regions.evaluate_folders`: the prediction folder
    must not be, lie inside or contain the reference folder; ``out_dir`` must hold no input and lie outside the
    reference dataset; at least one reference case must have a prediction; a prediction must lie on its
    reference's grid (or be the same grid in another voxel order, then reordered); label values must fit
    ``scheme``.

    Args:
        pred_dir: folder of ``<case>.nii.gz`` (or ``.nii``) label maps.
        ref_dir: a dataset folder (read through its layout) or a folder of ``<case>.nii.gz`` labels.
        out_dir: created if needed; gets ``official.csv``, ``official_summary.json``, ``official_panoptica.json``
            (and ``official_mets.csv`` for ``mets``).
        scheme: ``auto`` (the dataset layout's; refused for BraTS-PED cases, whose names do not tell their
            numbering), ``brats``, ``brats2023``, ``brats2024``, ``msd`` or ``ped``; converted to the challenge's
            numbering (`official_label_map`).
        challenge: gli, mets, ped, menrt, menpre or goat (the package's bundled configs); None: the one the case ids
            name (`challenge_of_cases`), else the scheme's (`DEFAULT_CHALLENGE`: ped for ``ped``, else gli).
        jobs: worker processes, one case each at a time.
        cases: only these case ids; each must have a reference.
        out_option: the option that chose ``out_dir``, named in a refusal.

    Returns:
        The summary written to ``official_summary.json``.

    Raises:
        UserError: the refusals above, ``--scheme labels``, an unknown scheme or challenge, a scheme the challenge
            does not number, the packages not installed, or a case the package cannot score.
    """
    _check_scheme(scheme)
    if scheme != "auto":
        resolve_challenge(challenge, scheme)
    if not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"jobs must be a whole number >= 1, got {jobs!r}")
    pairs = pairs or pair_cases(pred_dir, ref_dir, out_dir, cases, out_option=out_option, allow_mixed=allow_mixed)
    reference, pred_root, refs, preds = pairs.reference, pairs.pred_root, pairs.refs, pairs.preds
    scheme = pairs.scoring_scheme(scheme)  # auto or a BraTS scheme (checked above); the numbering written checked
    key = resolve_challenge(challenge, scheme, sorted(refs))  # BraTS-MET-... cases: mets, as the package scores them
    mapping = official_label_map(scheme, key)
    package = _package()
    layout = reference.layout.layout if reference.layout is not None else None
    unmatched = pairs.unmatched
    missing = [cid for cid in sorted(refs) if cid not in preds]
    for cid in missing:
        logger.warning("case %s: no prediction %s; scored as the official package scores a missing prediction "
                       "(373 in HD95 columns, 0 elsewhere)", cid, pred_root / f"{cid}.nii.gz")

    out = Path(out_dir).expanduser()
    with tempfile.TemporaryDirectory(prefix="brats-official-") as tmp_name:
        tmp = Path(tmp_name)
        tasks = [_Task(cid, preds[cid], refs[cid], mapping, key, scheme, layout, tmp)
                 for cid in sorted(refs) if cid in preds]
        results = _score_all(tasks, jobs)
        raw = {"metrics": results, "missings": missing}
        raw_json = tmp / "official_panoptica.json"
        raw_text = json.dumps(raw, indent=4, default=json_default)
        raw_json.write_text(raw_text, encoding="utf-8")
        table = _parse(package, "parse_seg_results", raw_json, tmp)
        mets_table = None
        if key == "mets":
            mets_table = _parse(package, "parse_mets_results", raw_json, tmp, vol_threshold=METS_VOLUME_THRESHOLD,
                                overlap_threshold=METS_OVERLAP_THRESHOLD)

    unscored = unnumbered_groups(key, mapping)  # e.g. RC under brats: the scheme numbers no such class
    regions = [g for g in results[0] if g not in ("subject_name", "error", *unscored)] if results else []
    columns, rows = _read_table(table)
    summary: dict[str, Any] = {
        "protocol": "official",
        "challenge": key,
        "config": f"config_{CHALLENGES[key]}.yaml",
        "packages": package_versions(),
        "scheme": scheme,
        "label_map": {str(k): v for k, v in sorted(mapping.items())},
        "cases": len(refs),
        "case_ids": sorted(refs),  # what was scored: another subset is another evaluation (check_replacement)
        "inputs_state": pairs.inputs_state(),  # the files as scored (a table of files since rewritten is stale)
        "regions": _statistics(columns, rows, regions),
        "table": table_statistics(columns, rows, regions),
        "table_parser": "parse_seg_results",
        "region_order": [g for g in PAPER_ORDER if g in regions] + [g for g in regions if g not in PAPER_ORDER],
        "missing_predictions": missing,
        "groups_not_in_scheme": unscored,  # in the package's files, not in our tables
        "models": {m: len(c) for m, c in pairs.models.items()},
        "n_missing_predictions": len(missing),
        "unmatched_predictions": unmatched,
        "reference": str(reference.root),
        "predictions": str(pred_root),
        "reference_layout": layout or "labels folder",
        "files": {"table": "official.csv", "per_exam": "official_panoptica.json", "table_file": "official.csv"},
        "conventions": dict(CONVENTIONS),
    }
    if mets_table is not None:
        mets_columns, mets_rows = _read_table(mets_table)
        summary["mets"] = {"volume_threshold_mm3": METS_VOLUME_THRESHOLD, "overlap_threshold": METS_OVERLAP_THRESHOLD,
                           "regions": _statistics(mets_columns, mets_rows, regions)}
        summary["table"] = table_statistics(mets_columns, mets_rows, regions)  # the MET parser's, printed
        summary["table_parser"] = "parse_mets_results"
        summary["files"]["mets_table"] = summary["files"]["table_file"] = "official_mets.csv"
    if missing:
        logger.warning("%d of %d case(s) have no prediction in %s", len(missing), len(refs), pred_root)
    if unmatched:
        logger.warning("%d prediction(s) with no reference, not scored: %s", len(unmatched), ", ".join(unmatched))

    atomic_write_text(out / "official_panoptica.json", raw_text + "\n")
    atomic_write_text(out / "official.csv", table)
    if mets_table is not None:
        atomic_write_text(out / "official_mets.csv", mets_table)
    summary = _json_safe(summary)
    atomic_write_text(out / "official_summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Tables and the protocol switch
# ----------------------------------------------------------------------------------------------------------------


def _cell(stats: dict | None, digits: int) -> str:
    if not stats:
        return "n/a"
    mean, std = stats.get("mean"), stats.get("std")
    if not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return "n/a"
    if not isinstance(std, (int, float)) or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


#: The columns of the printed table: the parser's per-case column stem, the heading, the digits.
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("lesionwise_dsc_mean", "LW Dice", 4), ("lesionwise_hd95_mean", "LW HD95 (mm)", 2), ("all_instance_f1", "LW F1", 4),
    ("global_dsc", "global Dice", 4), ("global_hd95", "global HD95 (vox)", 2))


def table_statistics(columns: list[str], rows: list[dict[str, str]], regions: Sequence[str]) -> dict:
    """``{region: {stem: {"mean", "std", "n"}}}`` of the printed table, from the parser's per-case rows: over the cases
    with a value (NaN: a region absent from both, skipped as the parser does), std with ddof 1; an unreachable
    distance (``inf``: no lesion matched) counts as `UNREACHABLE_MM`, the value the package gives a missing
    prediction, so that no row prints ``inf``."""
    cases = [r for r in rows if r["subject_id"] not in STAT_ROWS]
    out: dict[str, dict] = {}
    for region in regions:
        for stem, _, _ in TABLE_COLUMNS:
            column = f"{stem}_{region}"
            if column not in columns:
                continue
            values = [_number(r.get(column)) for r in cases]
            values = [UNREACHABLE_MM if math.isinf(v) else v for v in values if not math.isnan(v)]
            n = len(values)
            mean = sum(values) / n if n else math.nan
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
            out.setdefault(region, {})[stem] = {"mean": mean, "std": std, "n": n}
    return out


def format_official_table(summary: dict) -> str:
    """The official numbers as a BraTS paper prints them: per region (ET, TC, WT first) and the number of cases it
    averages, lesion-wise Dice and HD95 (mm) ``mean ± std``, lesion-detection F1, and the global ("legacy") Dice and
    HD95 (voxels: the package computes global metrics without the spacing); for ``mets``, the MET parser's own
    table. An unreachable distance counts as `UNREACHABLE_MM`."""
    table = summary.get("table") or {}
    header = f"{'Region':<8}{'n':>4}" + "".join(f"{title:>20}" for _, title, _ in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    for region in summary.get("region_order") or list(table):
        m = table.get(region, {})
        n = max((c.get("n", 0) for c in m.values()), default=0)
        cells = [_cell(m.get(stem), digits) for stem, _, digits in TABLE_COLUMNS]
        lines.append(f"{region.upper():<8}{n:>4}" + "".join(f"{c:>20}" for c in cells))
    versions = ", ".join(f"{k} {v}" for k, v in summary.get("packages", {}).items())
    missing = summary.get("missing_predictions") or []
    parser = summary.get("table_parser", "parse_seg_results")
    lines.append(f"official BraTS evaluation, challenge {summary['challenge']} ({versions}; the package's {parser}: "
                 f"{summary.get('files', {}).get('table_file', 'official.csv')}); {summary['cases']} cases, "
                 f"{len(missing)} without prediction, scheme {summary['scheme']}; mean ± std (ddof 1) over the n "
                 f"cases with a value, no lesion matched = {UNREACHABLE_MM:g} mm")
    if missing:
        lines.append(f"missing predictions (373 / 0 as the package scores them): {', '.join(missing)}")
    if summary.get("groups_not_in_scheme"):
        table_file = summary.get("files", {}).get("table_file", "official.csv")
        lines.append(f"not shown: {', '.join(g.upper() for g in summary['groups_not_in_scheme'])}, which scheme "
                     f"{summary['scheme']} does not number (the package's {table_file} has its columns)")
    if summary.get("unmatched_predictions"):
        lines.append(f"predictions without reference (not scored): {', '.join(summary['unmatched_predictions'])}")
    return "\n".join(lines)


