"""End to end through the MONAI CLI (or the scripts a user runs): runs."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import TINY_ARGS, cli_overrides, run_bundle


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


TINY = TINY_ARGS


def _cli(run_id: str, *args: str) -> subprocess.CompletedProcess:
    return run_bundle(run_id, cli_overrides(args), check=False)


def _last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


CLI_OUTPUT: dict[str, str] = {}


@pytest.fixture(scope="module")
def cli_run(tiny_dataset, tmp_path_factory):
    """A tiny run trained (1 epoch, demo-like network ids) and segmented once through the CLI."""
    run = tmp_path_factory.mktemp("cli") / "run"
    result = _cli("training", "--dataset_dir", str(tiny_dataset), "--run_dir", str(run), "--folds", "2",
                  "--epochs", "1", "--val_interval", "1", "--batch_size", "1", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    CLI_OUTPUT["training"] = result.stdout
    # no network ids: the run's record gives them
    result = _cli("inference", "--dataset_dir", str(tiny_dataset), "--run_dir", str(run),
                  "--num_workers", "0", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_cli_training_again_into_a_finished_run_ends_with_one_line_and_keeps_the_run(cli_run, tiny_dataset):
    before = _tree(cli_run / "models")
    result = _cli("training", "--dataset_dir", str(tiny_dataset), "--run_dir", str(cli_run),
                  "--folds", "2", "--epochs", "1", *TINY)
    assert result.returncode != 0
    assert _last_line(result).startswith(f"error: {cli_run} already holds a run")
    assert "Traceback" not in result.stderr
    assert _tree(cli_run / "models") == before


def test_cli_inference_again_skips_its_own_outputs_and_refuses_to_keep_another_models(cli_run, tiny_dataset):
    before = _tree(cli_run / "seg")
    again = _cli("inference", "--dataset_dir", str(tiny_dataset), "--run_dir", str(cli_run),
                 "--num_workers", "0", "--device", "cpu")
    assert again.returncode == 0 and "skipped 4 already segmented by this model" in again.stdout
    other = _cli("inference", "--dataset_dir", str(tiny_dataset), "--run_dir", str(cli_run),
                 "--num_workers", "0", "--device", "cpu", "--tta", "true")
    assert other.returncode != 0 and "not written by this model" in _last_line(other)
    assert _tree(cli_run / "seg") == before


def test_cli_inference_with_a_truncated_checkpoint_names_it_and_the_way_out(cli_run, tiny_dataset, tmp_path):
    bad = tmp_path / "models" / "model.pt"
    bad.parent.mkdir()
    bad.write_bytes((cli_run / "models" / "model.pt").read_bytes()[:1000])
    result = _cli("inference", "--dataset_dir", str(tiny_dataset), "--ckpt_path", str(bad),
                  "--output_dir", str(tmp_path / "seg"), "--device", "cpu")
    assert result.returncode != 0
    assert _last_line(result).startswith(f"error: {bad} cannot be read as a checkpoint")
    assert "model_last.pt" in _last_line(result) and not list((tmp_path / "seg").glob("*.nii.gz"))


def test_cli_training_ends_with_a_summary_and_the_next_command_which_works(cli_run, tiny_dataset):
    out = CLI_OUTPUT["training"]
    assert re.search(r"training finished: 1 epoch\(s\) on cpu, 2 training and 2 validation case\(s\)", out)
    assert re.search(r"best validation mean Dice \d\.\d{4} at epoch 1 \(TC \d\.\d{3}, WT \d\.\d{3}, ET", out)
    command = out.strip().splitlines()[-1]
    assert re.match(r"next: \S*python[\d.]* -m monai\.bundle run inference ", command), command
    assert f"--run_dir {cli_run}" in command
    assert f"--datalist {cli_run / 'datalist.json'} --infer_fold 0" in command
    assert (cli_run / "seg" / "labels.ctbl").is_file() and (cli_run / "seg" / "labels_itksnap.txt").is_file()


def test_cli_inference_saves_probabilities_that_threshold_to_the_written_labels(cli_run, tiny_dataset, tmp_path):
    import nibabel as nib
    import numpy as np

    from pipeline.data.labels import regions_to_labels

    out = tmp_path / "seg"
    result = _cli("inference", "--dataset_dir", str(tiny_dataset), "--run_dir", str(cli_run),
                  "--output_dir", str(out), "--save_probabilities", "true", "--num_workers", "0", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    for label_file in sorted(out.glob("*.nii.gz")):
        prob = nib.load(out / "probabilities" / label_file.name)
        p = np.moveaxis(prob.get_fdata(), -1, 0)
        assert p.shape[0] == 3 and 0.0 <= p.min() and p.max() <= 1.0
        np.testing.assert_allclose(prob.affine, nib.load(label_file).affine)
        np.testing.assert_array_equal(regions_to_labels(p > 0.5, "brats"), np.asarray(nib.load(label_file).dataobj))


def test_cli_inference_segments_a_single_case_folder(cli_run, tiny_dataset, tmp_path):
    result = _cli("inference", "--dataset_dir", str(tiny_dataset / "BraTS2021_00003"),
                  "--run_dir", str(cli_run), "--output_dir", str(tmp_path / "one"), "--num_workers", "0",
                  "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "one").glob("*.nii.gz")) == ["BraTS2021_00003.nii.gz"]


def test_cli_inference_of_a_fold_the_model_trained_on_is_refused_in_one_line(cli_run, tmp_path):
    out = tmp_path / "seg"
    result = _cli("inference", "--datalist", str(cli_run / "datalist.json"), "--infer_fold", "1", "--run_dir",
                  str(cli_run), "--output_dir", str(out), "--num_workers", "0", "--device", "cpu")
    assert result.returncode != 0
    last = _last_line(result)
    assert last.startswith("error: --infer_fold 1: this model trained on 2 of the fold's 2 case(s)"), last
    assert "pass --infer_fold 0" in last and "Traceback" not in result.stderr
    assert not out.exists() or not list(out.glob("*.nii.gz"))


def test_the_datalist_a_run_writes_reads_its_cases_through_their_layout(cli_run):
    from pipeline.data.source import DataSource
    from pipeline.evaluation.reference import reference_of

    reference = reference_of(DataSource(None, str(cli_run / "datalist.json")), 0)
    assert reference.layout is not None and reference.layout.layout == "brats2021"  # pictures need the images
    assert len(reference.files) == 2


def test_cli_evaluation_of_a_fold_segmented_by_a_model_that_trained_on_it_is_refused(cli_run, tmp_path):
    # cli_run's inference segmented every case of the dataset: fold 1's trained the model (fold 0 validated)
    common = ["--datalist", str(cli_run / "datalist.json"), "--run_dir", str(cli_run), "--output_dir",
              str(cli_run / "seg")]
    refused = _cli("evaluate", *common, "--infer_fold", "1", "--eval_dir", str(tmp_path / "eval1"))
    assert refused.returncode != 0
    last = _last_line(refused)
    assert last.startswith("error: --infer_fold 1: 2 of its 2 scored segmentation(s)"), last
    assert "trained on those cases" in last and not (tmp_path / "eval1" / "metrics.csv").exists()
    held_out = _cli("evaluate", *common, "--infer_fold", "0", "--eval_dir", str(tmp_path / "eval0"))
    assert held_out.returncode == 0, held_out.stderr[-2000:]
    assert (tmp_path / "eval0" / "metrics.csv").is_file()
