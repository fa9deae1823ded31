"""The probabilities sub-folder of an inference output folder is guarded as the folder is: a ``probabilities`` link
into the dataset is refused before anything is written, and a stale probability map that is an input (a link to a
label file) is never deleted."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.core.errors import UserError
from pipeline.core.provenance import Provenance
from pipeline.data.layouts import discover_cases
from pipeline.data.source import DataSource
from pipeline.inference.outputs import PROBABILITIES, InferenceReport, guard_outputs
from pipeline.inference.predict import write_label_like
from tests.helpers import checksums


def _copy(layout_datasets: dict[str, Path], layout: str, tmp_path: Path) -> Path:
    root = tmp_path / "data" / layout
    shutil.copytree(layout_datasets[layout], root)
    return root


@pytest.mark.parametrize(("layout", "target"), [
    pytest.param("msd", "labelsTr", id="msd_labelsTr"),
    pytest.param("msd", "imagesTr", id="msd_imagesTr"),
    pytest.param("msd", ".", id="msd_dataset_folder"),
    pytest.param("brats2023", "BraTS-GLI-00000-000", id="brats2023_case_folder"),
    pytest.param("brats2023", ".", id="brats2023_dataset_folder"),
])
def test_a_probabilities_folder_that_leads_into_the_inputs_is_refused_before_anything_is_written(
        layout: str, target: str, layout_datasets, tmp_path: Path) -> None:
    """``<output_dir>/probabilities`` linked to a dataset's labelsTr: inference replaced (save_probabilities) or
    deleted (stale maps of a case segmented again) the dataset's label files."""
    root = _copy(layout_datasets, layout, tmp_path)
    out = tmp_path / "seg"
    out.mkdir()
    (out / PROBABILITIES).symlink_to(root / target, target_is_directory=True)
    data = DataSource(root)
    before = checksums(root)
    report = InferenceReport(out, model="m1")
    with pytest.raises(UserError, match=rf"region probabilities \({out.resolve() / PROBABILITIES}\) must never be "
                                        r"written among the inputs; pass --output_dir"):
        guard_outputs(data, data.inference_items(), out, report=report)
    assert report.lock is None and not (out / ".lock").exists()
    assert checksums(root) == before


def test_a_probabilities_folder_linked_outside_the_inputs_is_accepted(layout_datasets, tmp_path: Path) -> None:
    root = _copy(layout_datasets, "msd", tmp_path)
    out, elsewhere = tmp_path / "seg", tmp_path / "maps"
    out.mkdir()
    elsewhere.mkdir()
    (out / PROBABILITIES).symlink_to(elsewhere, target_is_directory=True)
    data = DataSource(root)
    report = InferenceReport(out, model="m1")
    guard_outputs(data, data.inference_items(), out, report=report)
    report.finish()


@pytest.mark.parametrize(("stale", "deleted"), [
    pytest.param("file", True, id="a_stale_map_of_an_earlier_run_is_deleted"),
    pytest.param("symlink", False, id="a_symlink_to_the_cases_label_is_kept"),
    pytest.param("hardlink", False, id="a_hardlink_to_the_cases_label_is_kept"),
])
def test_stale_probabilities_are_deleted_only_where_the_guard_allows(stale: str, deleted: bool, layout_datasets,
                                                                     tmp_path: Path) -> None:
    """A case segmented again without probabilities loses its old map; the guard's `may_delete` decides first, so
    a map that is an input of the command (a link to a label file) stays, and so does the label."""
    root = _copy(layout_datasets, "msd", tmp_path)
    case = discover_cases(root)[0]
    out = tmp_path / "seg"
    (out / PROBABILITIES).mkdir(parents=True)
    old = out / PROBABILITIES / f"{case.case_id}.nii.gz"
    if stale == "file":
        old.write_bytes(b"an earlier run's probabilities")
    else:
        (os.symlink if stale == "symlink" else os.link)(case.label, old)
    # an earlier run of this model in this folder wrote them (its segmentation since moved away)
    Provenance(out).record(case.case_id, model="m1", file=f"{case.case_id}.nii.gz", inputs=[], probabilities="m1")
    data = DataSource(root)
    before = checksums(root)
    report = InferenceReport(out, model="m1")
    guard_outputs(data, data.inference_items(), out, report=report)
    empty = np.zeros(nib.load(case.images[0]).shape[:3], np.uint8)  # the case segmented again, as (H, W, D) uint8
    path = write_label_like(empty, case.images[0], out / f"{case.case_id}.nii.gz")
    report.wrote(case.case_id, path, case.images)
    report.finish()
    assert (not old.exists() and not old.is_symlink()) == deleted
    assert checksums(root) == before and Path(case.label).is_file()
    assert Provenance(out).cases[case.case_id]["probabilities"] is None



def test_a_users_file_among_the_probabilities_is_refused_unless_overwrite(layout_datasets, tmp_path: Path) -> None:
    """A file in <output_dir>/probabilities named as a case, of no recorded inference, was replaced with
    save_probabilities (deleted as stale without): refused by name, before anything is written."""
    root = _copy(layout_datasets, "brats2021", tmp_path)
    case = discover_cases(root)[0]
    out = tmp_path / "seg"
    (out / PROBABILITIES).mkdir(parents=True)
    theirs = out / PROBABILITIES / f"{case.case_id}.nii.gz"
    theirs.write_bytes(b"my own probability maps")
    data = DataSource(root)
    before = checksums(out)
    with pytest.raises(UserError, match=rf"already holds 1 output\(s\) not written by this model \(m1\): "
                                        rf"{PROBABILITIES}/{case.case_id}.nii.gz \(no record of its model\)"):
        guard_outputs(data, data.inference_items(), out, report=InferenceReport(out, model="m1"))
    assert checksums(out) == before and not (out / ".lock").exists()
    report = InferenceReport(out, model="m1")
    guard_outputs(data, data.inference_items(), out, report=report, overwrite=True)  # asked for by name: replaced
    report.finish()


def _a_probability_map(layout_datasets: dict[str, Path], tmp_path: Path, model: str) -> tuple:
    """A copied dataset, its first case, an output folder and that case's probability map there, as ``model``'s
    inference writes it (not recorded): ``(root, case, out, map)``."""
    from pipeline.inference.predict import write_probabilities_like

    root = _copy(layout_datasets, "brats2021", tmp_path)
    case = discover_cases(root)[0]
    out = tmp_path / "seg"
    maps = out / PROBABILITIES / f"{case.case_id}.nii.gz"
    maps.parent.mkdir(parents=True)
    shape = nib.load(case.images[0]).shape[:3]
    write_probabilities_like(np.full((3, *shape), 0.5, np.float32), case.images[0], maps, ["TC", "WT", "ET"], model)
    return root, case, out, maps


@pytest.mark.parametrize("since", ["unchanged", "a_users_file_put_over_them", "another_models_record"])
def test_recorded_probabilities_are_known_by_their_identity(layout_datasets, tmp_path: Path, since: str) -> None:
    """A user's file copied over a case's recorded probabilities was deleted as stale (or replaced) without a word:
    the record named them by the folder alone."""
    from pipeline.core.provenance import input_identity

    writer = "m0" if since == "another_models_record" else "m1"  # (its segmentation since deleted)
    root, case, out, maps = _a_probability_map(layout_datasets, tmp_path, writer)
    Provenance(out).record(case.case_id, model=writer, file=f"{case.case_id}.nii.gz", inputs=[], probabilities=writer,
                           probabilities_output=input_identity([maps], digest=True)[0])
    if since == "a_users_file_put_over_them":
        shutil.copy(case.images[0], maps)  # a contrast of the case, by mistake
    data = DataSource(root)
    report = InferenceReport(out, model="m1")
    if since == "unchanged":
        guard_outputs(data, data.inference_items(), out, report=report)
        report.finish()
    else:
        before = checksums(out)
        why = "model m0" if writer == "m0" else "not the file its record describes: put there since"
        with pytest.raises(UserError, match=rf"{PROBABILITIES}/{case.case_id}.nii.gz \({why}\)"):
            guard_outputs(data, data.inference_items(), out, report=report)
        assert checksums(out) == before


@pytest.mark.parametrize("kind", ["probabilities", "segmentation", "segmentation_edited_since"])
@pytest.mark.parametrize("model", ["m1", "m0"], ids=["this_models", "another_models_is_refused"])
def test_a_file_an_interrupted_inference_left_before_its_record_is_its_own(layout_datasets, tmp_path: Path,
                                                                          model: str, kind: str) -> None:
    """Probabilities and segmentations are written (renamed into place) before provenance.json records them: a run
    stopped between the two left a file of no record, which refused the next run as a user's file (red team: killed
    as the first segmentation appeared, the plain rerun was refused; only --overwrite redid every case)."""
    root, case, out, maps = _a_probability_map(layout_datasets, tmp_path, model)
    if kind.startswith("segmentation"):
        maps.unlink()
        shape = nib.load(case.images[0]).shape[:3]
        path = write_label_like(np.zeros(shape, np.uint8), case.images[0], out / f"{case.case_id}.nii.gz", model=model)
        if kind == "segmentation_edited_since":  # a copy corrected by hand, saved with its header (review)
            image = nib.load(path)
            edited = np.asarray(image.dataobj).copy()
            edited[0, 0, 0] = 2
            nib.save(nib.Nifti1Image(edited, image.affine, image.header), path)
    data = DataSource(root)
    report = InferenceReport(out, model="m1")
    if model == "m1" and kind != "segmentation_edited_since":
        guard_outputs(data, data.inference_items(), out, report=report)
        report.finish()
    else:  # another model's file (copied there): not this run's to replace
        named = rf"{PROBABILITIES}/{case.case_id}.nii.gz" if kind == "probabilities" else case.case_id
        with pytest.raises(UserError, match=rf"{named} \(no record of its model\)"):
            guard_outputs(data, data.inference_items(), out, report=report)


@pytest.mark.parametrize(("situation", "refused"), [
    pytest.param("the_users_tables", True, id="the_users_tables_are_refused"),
    pytest.param("the_users_tables_overwrite", False, id="overwrite_replaces_them"),
    pytest.param("our_tables", False, id="the_same_tables_are_ours"),
    pytest.param("a_folder_inference_wrote", False, id="a_folder_with_its_record_is_ours"),
    pytest.param("a_table_of_a_scheme_recorded_there", False, id="a_table_inference_wrote_is_written_again"),
])
@pytest.mark.parametrize("layout", ["brats2021", "msd"])
def test_a_users_viewer_tables_are_not_replaced_unasked(layout_datasets, tmp_path: Path, layout: str,
                                                        situation: str, refused: bool) -> None:
    """A user's own labels.ctbl and labels_itksnap.txt in the output folder were replaced by inference's; in
    inference's own folder a user's edit of them was undone by the next run."""
    from pipeline.inference.viewing import VIEWER_TABLES, write_viewer_tables

    root = _copy(layout_datasets, layout, tmp_path)
    data = DataSource(root)
    out = tmp_path / "seg"
    out.mkdir()
    for name, table in VIEWER_TABLES.items():
        ours = situation in ("our_tables", "a_folder_inference_wrote", "a_table_of_a_scheme_recorded_there")
        (out / name).write_text(table(data.description) if ours else f"{name}: my own colours\n")
    if situation == "a_folder_inference_wrote":
        (out / "labels.ctbl").write_text("an older colour table of ours\n")
        Provenance(out).record("earlier_case", model="m0", file="earlier_case.nii.gz", inputs=[])
    if situation == "a_table_of_a_scheme_recorded_there":  # segmented in brats2023 before: its table
        (out / "labels.ctbl").write_text(VIEWER_TABLES["labels.ctbl"]("brats2023"))
        Provenance(out).record("earlier_case", model="m0", file="earlier_case.nii.gz", inputs=[], scheme="brats2023")
    before = checksums(out)
    report = InferenceReport(out, model="m1")
    items = data.inference_items()
    if refused:
        with pytest.raises(UserError, match=rf"{out / 'labels.ctbl'} is not a table inference wrote .* move them "
                                            r"aside, pass another --output_dir, or --overwrite true to replace them"):
            guard_outputs(data, items, out, report=report)
        assert checksums(out) == before and not (out / ".lock").exists()  # nothing written, the lock released
    else:  # then written as inference.yaml writes them: an edit in inference's own folder is kept
        guard_outputs(data, items, out, report=report, overwrite=situation.endswith("overwrite"))
        write_viewer_tables(out, data.description, keep=report.kept_tables)
        report.finish()
        edited = situation == "a_folder_inference_wrote"
        assert (out / "labels.ctbl").read_text() == ("an older colour table of ours\n" if edited
                                                     else VIEWER_TABLES["labels.ctbl"](data.description))
        assert (out / "labels_itksnap.txt").read_text() == VIEWER_TABLES["labels_itksnap.txt"](data.description)


@pytest.mark.parametrize(("taken", "advised"), [
    pytest.param([], "seg_test", id="its_name_is_free"),
    pytest.param(["seg_test"], "seg_siteB_test", id="its_name_is_the_refused_folder"),
    pytest.param(["seg_test", "seg_siteB_test", "seg_siteB_test_2"], "seg_siteB_test_3", id="numbered_after_those"),
])
def test_the_folder_advised_for_another_dataset_is_free(tmp_path: Path, taken: list[str], advised: str) -> None:
    """siteA/test segmented into run/seg_test, then siteB/test: the refusal advised run/seg_test, the very folder
    it refused."""
    from types import SimpleNamespace

    from pipeline.inference.outputs import _free_folder

    for name in taken:
        (tmp_path / "run" / name).mkdir(parents=True)
    data = SimpleNamespace(dataset_dir=str(tmp_path / "siteB" / "test"), datalist_path=None)
    assert _free_folder(data, tmp_path / "run" / "seg_test") == tmp_path / "run" / advised


@pytest.mark.parametrize(("overlap", "mode", "batch", "refused"), [
    pytest.param(0.5, "gaussian", 4, None, id="the_default"),
    pytest.param("0.25", "constant", "2", None, id="as_the_cli_hands_them_over"),
    pytest.param("[0.5, 0.25, 0]", "gaussian", 1, None, id="per_axis"),
    pytest.param(1.5, "gaussian", 4, "--sw_overlap must be a number from 0 to below 1, got 1.5", id="overlap_1.5"),
    pytest.param(1, "gaussian", 4, "--sw_overlap must be a number from 0 to below 1, got 1", id="overlap_1"),
    pytest.param([0.5, -0.1, 0.5], "gaussian", 4, "got -0.1", id="an_axis_below_0"),
    pytest.param(0.5, "Gaussian", 4, "--inferer#mode must be one of constant, gaussian, got 'Gaussian'",
                 id="mode_as_monai_spells_it_only"),
    pytest.param(0.5, "gaussian", 0, "--sliding_window_batch_size must be at least 1", id="no_window_a_step"),
])
def test_the_sliding_window_takes_only_values_monai_can_use(overlap: object, mode: str, batch: object,
                                                            refused: str | None) -> None:
    """--sw_overlap 1.5 was accepted and failed inside the first case with a traceback."""
    from pipeline.inference.predict import sliding_window

    if refused is None:
        inferer = sliding_window([16, 16, 16], batch, overlap, mode)
        assert inferer.mode == mode and inferer.sw_batch_size == int(batch)
    else:
        with pytest.raises(UserError, match=re.escape(refused)):
            sliding_window([16, 16, 16], batch, overlap, mode)


@pytest.mark.parametrize("cuda", [False, True], ids=["cpu", "cuda"])
@pytest.mark.parametrize(("asked", "refused"), [
    pytest.param(4, None, id="the_default"), pytest.param("16", None, id="as_the_cli_hands_it_over"),
    pytest.param(0, "--sliding_window_batch_size must be at least 1", id="no_window_a_pass"),
    pytest.param("x", "--sliding_window_batch_size", id="not_a_number"),
])
def test_fast_windows_per_pass_checks_the_asked_number_on_either_device(cuda: bool, asked: object,
                                                                        refused: str | None) -> None:
    """Under fast.yaml on the CPU, --sliding_window_batch_size 0 was never read (1 is used there), so it passed."""
    from pipeline.inference.predict import windows_per_pass

    if refused is not None:
        with pytest.raises(UserError, match=re.escape(refused)):
            windows_per_pass(asked, cuda=cuda, cuda_least=8, cpu=1)
    else:
        assert windows_per_pass(asked, cuda=cuda, cuda_least=8, cpu=1) == (max(8, int(asked)) if cuda else 1)
