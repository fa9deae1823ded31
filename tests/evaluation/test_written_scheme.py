"""The label numbering predictions were written in: inference records it per case in provenance.json, and every path
that scores or draws predictions refuses those written in a numbering whose values mean other classes than the one it
scores in (``infer --set label_scheme msd`` on BraTS 2023 data, then ``evaluate``: TC was predicted oedema + ET scored
against NETC + ET). Numberings that agree on every class they share are scored; predictions with no record of their
numbering are scored as before."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.__main__ import main as pipeline_main
from pipeline.core.errors import UserError
from pipeline.core.provenance import PROVENANCE, Provenance, input_identity
from pipeline.data.labels import describe, relabel, roles_by_value
from pipeline.data.layouts import discover_cases
from pipeline.evaluation.evaluate import evaluate
from pipeline.evaluation.reference import numbering_differences, read_reference
from pipeline.evaluation.regions import evaluate_folders
from pipeline.inference.outputs import InferenceReport
from pipeline.inference.predict import SaveBratsLabeld
from tests.helpers import checksums, parse_bundle

#: Every path that reads predictions to score or draw them.
PATHS = (
    pytest.param("evaluate", id="cli_evaluate"),
    pytest.param("evaluate_official", id="cli_evaluate_official"),
    pytest.param("bundle_evaluate", id="bundle_evaluate_yaml"),
    pytest.param("compare", id="cli_compare"),
    pytest.param("plot_evaluation", id="cli_plot_evaluation"),
    pytest.param("crossval_scoring", id="crossval_scoring_allow_mixed"),
)


def _predictions(root: Path, pred: Path, numbering: str) -> list[str]:
    """``pred/<case>.nii.gz`` for every case of ``root``: its reference label renumbered into ``numbering`` (a perfect
    segmentation, written in that numbering), as inference writes it. Returns the case ids."""
    own = roles_by_value(describe(read_reference(root).layout.label_scheme))
    pred.mkdir(parents=True)
    cases = discover_cases(root)
    for case in cases:
        label = nib.load(case.label)
        data = relabel(np.asarray(label.dataobj), own, numbering)
        nib.save(nib.Nifti1Image(data, label.affine), pred / f"{case.case_id}.nii.gz")
    return [c.case_id for c in cases]


def _record(root: Path, pred: Path, scheme: str | None) -> None:
    """provenance.json of ``pred`` as inference writes it: one model, the cases' inputs, and the scheme (None: a
    record from before schemes were kept)."""
    record = Provenance(pred)
    for case in discover_cases(root):
        record.record(case.case_id, model="m1", file=f"{case.case_id}.nii.gz", inputs=input_identity(case.images),
                      scheme=scheme)


def _score(path: str, root: Path, pred: Path, tmp: Path, record: Callable[[], None],
           capsys: pytest.CaptureFixture) -> str:
    """Score (or draw) ``pred`` against ``root`` through ``path``, with provenance.json written by ``record`` before
    (for the pictures, after the evaluation they illustrate); '' when it ran, else its refusal."""
    if path == "plot_evaluation":
        assert pipeline_main(["evaluate", str(pred), str(root), "--out", str(tmp / "eval"), "--no-pictures"]) == 0
        record()
        argv = ["plot", "evaluation", str(tmp / "eval"), str(pred), str(root), "--out", str(tmp / "pictures")]
    else:
        record()
    if path in ("bundle_evaluate", "crossval_scoring"):
        try:
            if path == "crossval_scoring":  # cross_validation_summary's scoring: one model per fold, allow_mixed
                evaluate("legacy", pred, read_reference(root), tmp / "eval", scheme="auto", allow_mixed=True,
                         overwrite=True)
            else:
                parser = parse_bundle("evaluate", {"device": "cpu", "dataset_dir": str(root), "output_dir": str(pred),
                                                   "eval_dir": str(tmp / "eval")})
                parser.get_parsed_content("evaluate#0")
        except Exception as err:  # noqa: BLE001 - the bundle wraps the refusal: the UserError it chains is read
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, UserError):
                cause = cause.__cause__ or cause.__context__
            return str(cause or err)
        return ""
    if path == "evaluate":
        argv = ["evaluate", str(pred), str(root), "--out", str(tmp / "eval")]
    elif path == "evaluate_official":
        pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
        argv = ["evaluate", str(pred), str(root), "--out", str(tmp / "eval"), "--protocol", "official"]
    elif path == "compare":
        other = tmp / "pred_copy"
        shutil.copytree(pred, other)
        argv = ["compare", str(root), str(pred), str(other), "--out", str(tmp / "comparison")]
    capsys.readouterr()
    code = pipeline_main(argv)
    err = capsys.readouterr().err.strip()
    return "" if code == 0 else err.splitlines()[-1]


@pytest.mark.parametrize("path", PATHS)
def test_every_scoring_path_refuses_predictions_written_in_another_numbering(path: str, layout_datasets,
                                                                           tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """``infer -i BraTS2023_folder --set label_scheme msd`` writes MSD numbering (1 oedema, 2 non-enhancing): its
    values fit brats2023, so TC (predicted oedema + ET) was scored against NETC + ET without a word."""
    root = layout_datasets["brats2023"]
    pred = tmp_path / "seg"
    cases = _predictions(root, pred, "msd")
    before = checksums(root)
    own = read_reference(root).layout.label_scheme
    refusal = _score(path, root, pred, tmp_path, lambda: _record(root, pred, "msd"), capsys)
    assert f"{pred}: {len(cases)} of the {len(cases)} scored segmentation(s) (e.g. case {cases[0]}" in refusal
    assert f"written in label scheme msd, but this evaluation scores them in scheme {own}" in refusal
    assert f"ED is 1 in scheme msd, 2 in scheme {own}" in refusal
    assert refusal.endswith("--scheme msd does not fit the reference dataset's labels, so segment the reference's "
                            "own images (without --set label_scheme msd, if it was given): inference writes the "
                            "numbering of the data it segments")
    assert not (tmp_path / "comparison").exists() and not (tmp_path / "pictures").exists()
    assert path == "plot_evaluation" or not (tmp_path / "eval" / "summary.json").exists()
    assert checksums(root) == before


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("numbering", "recorded"), [
    pytest.param("brats2024", "brats2024", id="written_in_a_scheme_of_the_same_classes_plus_rc"),
    pytest.param("brats2023", None, id="a_record_from_before_schemes_were_kept"),
    pytest.param("brats2023", "no provenance", id="foreign_segmentations_without_provenance"),
])
def test_predictions_whose_numbering_means_the_same_classes_or_is_unknown_are_scored(
        path: str, numbering: str, recorded: str | None, layout_datasets, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    root = layout_datasets["brats2023"]
    pred = tmp_path / "seg"
    _predictions(root, pred, numbering)

    def record() -> None:
        if recorded != "no provenance":
            _record(root, pred, recorded)

    assert _score(path, root, pred, tmp_path, record, capsys) == ""
    if path in ("evaluate", "crossval_scoring", "bundle_evaluate"):
        summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
        assert summary["mean_dice"] == 1.0  # the same classes: a perfect segmentation scores as one


def test_scoring_labels_value_by_value_refuses_another_numbering_than_the_references(layout_datasets,
                                                                                     tmp_path: Path) -> None:
    """``--scheme labels`` scores value 1 against value 1: under MSD numbering that is oedema against NETC."""
    root = layout_datasets["brats2023"]
    pred = tmp_path / "seg"
    _predictions(root, pred, "msd")
    _record(root, pred, "msd")
    own = read_reference(root).layout.label_scheme
    with pytest.raises(UserError, match=f"--scheme labels scores each value against the reference's numbering, "
                                        f"scheme {own}"):
        evaluate_folders(pred, root, tmp_path / "eval", scheme="labels")


def test_a_folder_of_labels_names_the_written_scheme_as_the_scheme_to_score_with(layout_datasets,
                                                                                 tmp_path: Path) -> None:
    """A folder of labels says nothing of its numbering but the --scheme given: the written one may be the right
    one, so the refusal offers it."""
    root = layout_datasets["brats2023"]
    pred, labels = tmp_path / "seg", tmp_path / "labels"
    _predictions(root, pred, "msd")
    _record(root, pred, "msd")
    labels.mkdir()
    for case in discover_cases(root):
        shutil.copy(case.label, labels / f"{case.case_id}.nii.gz")
    with pytest.raises(UserError, match="evaluate with --scheme msd if the reference labels are numbered so too"):
        evaluate_folders(pred, labels, tmp_path / "eval", scheme="brats2023")


@pytest.mark.parametrize(("written", "scored", "differences"), [
    pytest.param("msd", "brats2023", ["NCR is 2 in scheme msd, 1 in scheme brats2023",
                                      "ED is 1 in scheme msd, 2 in scheme brats2023"], id="msd_on_brats2023"),
    pytest.param("brats", "brats2023", ["ET is 4 in scheme brats, 3 in scheme brats2023"], id="et_4_against_et_3"),
    pytest.param("brats2024", "brats", ["ET is 3 in scheme brats2024, 4 in scheme brats"], id="rc_4_against_et_4"),
    pytest.param("brats2023", "brats2024", [], id="brats2023_in_brats2024_same_classes"),
    pytest.param("brats2024", "brats2023", [], id="brats2024_in_brats2023_same_classes"),
    pytest.param("msd", "msd", [], id="same_name"),
    pytest.param("ped", "brats2023", ["NCR is 2 in scheme ped, 1 in scheme brats2023",
                                      "ED is 4 in scheme ped, 2 in scheme brats2023",
                                      "ET is 1 in scheme ped, 3 in scheme brats2023"], id="ped_on_brats2023"),
    pytest.param("brats2023", "ped", ["NCR is 1 in scheme brats2023, 2 in scheme ped",
                                      "ED is 2 in scheme brats2023, 4 in scheme ped",
                                      "ET is 3 in scheme brats2023, 1 in scheme ped"], id="brats2023_on_ped"),
    pytest.param("ped", "brats2024", ["NCR is 2 in scheme ped, 1 in scheme brats2024",
                                      "ED is 4 in scheme ped, 2 in scheme brats2024",
                                      "ET is 1 in scheme ped, 3 in scheme brats2024"], id="ped_on_brats2024"),
])
def test_numberings_are_compared_by_what_each_value_means(written: str, scored: str,
                                                          differences: list[str]) -> None:
    assert numbering_differences(written, scored) == differences


@pytest.mark.parametrize("scheme", ["brats", "brats2023", "brats2024", "msd", "ped"])
def test_inference_records_the_scheme_each_segmentation_is_written_in(scheme: str, layout_datasets,
                                                                      tmp_path: Path) -> None:
    case = discover_cases(layout_datasets["brats2023"])[0]
    out = tmp_path / "seg"
    report = InferenceReport(out, model="m1")
    save = SaveBratsLabeld("pred", output_dir=str(out), scheme=scheme, report=report)
    save({"case": case.case_id, "image": list(case.images),
          "pred": torch.zeros(len(describe(scheme).regions), 32, 32, 24)})
    report.finish()
    entry = json.loads((out / PROVENANCE).read_text())["cases"][case.case_id]
    assert entry["scheme"] == scheme and Provenance(out).schemes([case.case_id]) == {scheme: [case.case_id]}
