"""The one output guard: outputs never among the inputs, however the inputs are reached (links included)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.data.layouts import output_guard  # the guard as every writer gets it


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "data"
    case = root / "Case_1"
    case.mkdir(parents=True)
    files = [case / f"Case_1_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair", "seg")]
    for f in files:
        f.write_bytes(b"x")
    return root, files


@pytest.mark.parametrize(("where", "fragment"), [
    pytest.param(lambda root: root, "is the input folder", id="the_dataset_itself"),
    pytest.param(lambda root: root / "Case_1", "lies inside the input folder", id="a_case_folder"),
    pytest.param(lambda root: root / "out", "lies inside the input folder", id="a_new_folder_in_the_dataset"),
    pytest.param(lambda root: root.parent, "contains the input folder", id="a_folder_above_the_dataset"),
])
def test_an_output_folder_in_or_around_the_dataset_is_refused(dataset, where, fragment) -> None:
    root, files = dataset
    with pytest.raises(UserError, match=fragment) as err:
        output_guard(files, roots=[root]).folder(where(root), what="segmentations", option="--output_dir")
    assert "--output_dir" in str(err.value)


def test_the_dataset_folder_is_known_from_its_files_alone(dataset) -> None:
    root, files = dataset  # a datalist lists files, not the dataset folder: BraTS naming shows it
    with pytest.raises(UserError, match=f"lies inside the input folder {root}"):
        output_guard(files).folder(root / "seg", what="segmentations", option="--output_dir")


@pytest.mark.parametrize("sub", ["imagesTs", "labelsTr"])
def test_a_decathlon_folder_beside_the_listed_files_is_refused(tmp_path: Path, sub: str) -> None:
    image = tmp_path / "Task01" / "imagesTr" / "BRATS_001.nii.gz"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x")
    with pytest.raises(UserError, match="lies inside the input folder"):
        output_guard([image]).folder(tmp_path / "Task01" / sub, what="segmentations", option="--output_dir")


def test_a_folder_of_symlinked_cases_protects_the_original_dataset(dataset, tmp_path: Path) -> None:
    root, files = dataset
    subset = tmp_path / "subset" / "Case_1"
    subset.mkdir(parents=True)
    links = []
    for f in files:
        (subset / f.name).symlink_to(f)
        links.append(subset / f.name)
    guard = output_guard(links, roots=[tmp_path / "subset"])
    with pytest.raises(UserError, match=f"input folder {root}"):
        guard.folder(root / "seg", what="segmentations", option="--output_dir")


def test_an_output_file_that_is_an_input_through_a_hardlink_is_refused(dataset, tmp_path: Path) -> None:
    root, files = dataset
    link = tmp_path / "elsewhere.nii.gz"
    os.link(files[4], link)
    with pytest.raises(UserError, match="is an input of this command"):
        output_guard(files, roots=[root]).file(link, what="a datalist", option="--out")
    assert not output_guard(files, roots=[root]).may_delete(link)


def test_a_protected_file_is_never_written_but_its_folder_may_receive_outputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    datalist = run / "datalist.json"
    datalist.write_text("{}")
    guard = output_guard([], protect=[datalist])
    assert guard.folder(run, what="a training run", option="--run_dir") == run.resolve()
    with pytest.raises(UserError, match="is an input"):
        guard.file(datalist, what="a datalist", option="--out")
    assert not guard.may_delete(datalist) and guard.may_delete(run / "models" / "model.pt")


def test_an_output_folder_beside_the_dataset_is_accepted_and_a_number_is_a_path(dataset, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root, files = dataset
    out = output_guard(files, roots=[root]).folder(tmp_path / "runs" / "seg", what="x", option="--output_dir")
    assert out == (tmp_path / "runs" / "seg").resolve() and not out.exists()
    monkeypatch.chdir(tmp_path)
    assert output_guard(files, roots=[root]).folder(20241204, what="x", option="--run_dir") == tmp_path / "20241204"


@pytest.mark.parametrize(("command", "refused"), [
    pytest.param(["ckpt_export", "network_def", "--filepath", "{run}/models/model.pt", "--ckpt_file",
                  "{run}/models/model.pt"], "is the checkpoint ckpt_export exports", id="over_its_checkpoint"),
    pytest.param(["onnx_export", "network_def", "--filepath={run}/run.json", "--ckpt-file", "{run}/models/model.pt"],
                 "is a file of the run {run} (run.json): onnx_export would write over it", id="over_the_runs_record"),
    pytest.param(["ckpt_export", "network_def", "{run}/models/model.pt", "--ckpt_file", "{run}/models/model.pt"],
                 "is the checkpoint ckpt_export exports", id="positional_filepath"),
    pytest.param(["ckpt_export", "--meta_file", "m.json", "network_def", "{run}/models/model.pt",
                  "{run}/models/model.pt"], "is the checkpoint ckpt_export exports",
                 id="positional_filepath_and_checkpoint"),
    pytest.param(["ckpt_export", "--filepath", "{run}/models/model_last.pt", "--ckpt_file", "{other}"],
                 "is a file of the run {run}", id="over_another_model_of_the_run"),
    pytest.param(["ckpt_export", "--filepath", "{run}/model.ts", "--ckpt_file", "{run}/models/model.pt"], None,
                 id="a_new_file_in_the_run_folder"),
    pytest.param(["ckpt_export", "--filepath", "{run}/export.ts", "--ckpt_file", "{run}/models/model.pt"], None,
                 id="an_earlier_export_in_the_run_folder_again"),
    pytest.param(["ckpt_export", "--filepath", "{other}", "--ckpt_file", "{run}/models/model.pt"], None,
                 id="an_earlier_export_elsewhere"),
    pytest.param(["ckpt_export", "--filepath", "{image}", "--ckpt_file", "{run}/models/model.pt"],
                 "exists and is no export", id="over_an_image_of_the_data"),
    pytest.param(["run", "inference", "--filepath", "{run}/run.json"], None, id="not_an_export"),
    pytest.param(["ckpt_export", "network_def", "--args_file", "{args}"], "is the checkpoint ckpt_export exports",
                 id="filepath_and_checkpoint_in_an_args_file"),
    pytest.param(["ckpt_export", "network_def", "--args_file", "{args}", "--filepath", "{run}/new.ts"], None,
                 id="the_command_line_over_the_args_file"),
])
def test_an_export_over_its_checkpoint_or_a_runs_file_is_refused(tmp_path: Path, command: list[str],
                                                                  refused: str | None) -> None:
    """`monai.bundle ckpt_export --filepath runs/x/models/model.pt --ckpt_file runs/x/models/model.pt` replaced the
    run's model with a TorchScript archive inference could not read; `onnx_export --filepath runs/x/run.json`
    replaced the run's record."""
    from pipeline.core.guard import export_refusal

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    for name in ("models/model.pt", "models/model_last.pt", "export.ts"):
        (run / name).write_bytes(b"the run's")
    (run / "run.json").write_text(json.dumps({"ids": {}}))  # a run's record (a user's run.json is no run's)
    (tmp_path / "other.ts").write_bytes(b"an older export")
    (tmp_path / "case_t1.nii.gz").write_bytes(b"an image")
    args = tmp_path / "export_args.json"  # MONAI's --args_file: the ids the command line does not give
    args.write_text(json.dumps({"filepath": str(run / "models/model.pt"), "ckpt_file": str(run / "models/model.pt")}))
    argv = [a.format(run=run, other=tmp_path / "other.ts", image=tmp_path / "case_t1.nii.gz", args=args)
            for a in command]
    refusal = export_refusal(argv, datasets=lambda *_: None)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused.format(run=run) in str(refusal) and "name a new file" in str(refusal)
