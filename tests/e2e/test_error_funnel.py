"""One error funnel: through either CLI, a refusal, a corrupt file, a bad value or a full or read-only disk ends in
one ``error:`` line naming the file or flag and the fix; anything else is a bug and shows its traceback."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.bundle import command
from pipeline.core import files
from tests.helpers import REPO, TINY_IDS, last_line
from tests.warm import run_module


def _bundle(run_id: str, cwd: Path = REPO, variants: dict | None = None, **ids: object) -> subprocess.CompletedProcess:
    return run_module(command(run_id, {**TINY_IDS, **ids}, **(variants or {})), capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _one_error_line(result: subprocess.CompletedProcess, *named: str) -> None:
    line = last_line(result)
    assert result.returncode != 0 and line.startswith("error: "), (result.stdout + result.stderr)[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for text in named:
        assert text in line, line


@pytest.mark.parametrize(("content", "named"), [
    pytest.param(b"", "is empty (0 bytes)", id="zero_bytes"),
    pytest.param(None, "cannot be read as a checkpoint", id="truncated"),
])
def test_a_broken_training_state_on_resume_is_one_line(content: bytes | None, named: str, trained_run: Path,
                                                       tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    state = run / "models" / "checkpoint.pt"
    state.write_bytes(content if content is not None else state.read_bytes()[:500])
    result = _bundle("training", dataset_dir=tiny_dataset, run_dir=run, folds=2, epochs=2, batch_size=1,
                     resume="true")
    _one_error_line(result, str(state), named, "--overwrite true")


def test_a_truncated_fold_model_of_an_ensemble_is_one_line(trained_run: Path, tiny_dataset: Path,
                                                           tmp_path: Path) -> None:
    cv = tmp_path / "cv"
    for f in (0, 1):
        shutil.copytree(trained_run, cv / f"fold_{f}")
    model = cv / "fold_1" / "models" / "model.pt"
    model.write_bytes(model.read_bytes()[:300])
    result = _bundle("inference", variants={"ensemble": True}, dataset_dir=tiny_dataset, run_dir=cv,
                     ensemble_folds="[0,1]", output_dir=tmp_path / "seg")
    _one_error_line(result, str(model), "retrain fold 1")


def test_an_ensemble_naming_a_fold_twice_is_one_line(trained_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    cv = tmp_path / "cv"
    shutil.copytree(trained_run, cv / "fold_0")
    result = _bundle("inference", variants={"ensemble": True}, dataset_dir=tiny_dataset, run_dir=cv,
                     ensemble_folds="[0,0]", output_dir=tmp_path / "seg")
    _one_error_line(result, "--ensemble_folds [0, 0]: fold(s) [0] given twice")
    assert not (tmp_path / "seg").exists() and not (cv / "ensemble").exists()


@pytest.mark.parametrize(("ids", "named"), [
    pytest.param({"resume": "maybe"}, "--resume must be true or false", id="resume_maybe"),
    pytest.param({"epochs": 0}, "--epochs must be at least 1", id="epochs_0"),
    pytest.param({"folds": 1}, "--folds must be at least 2", id="folds_1"),
    pytest.param({"label_scheme": "foo"}, "unknown label_scheme 'foo'", id="label_scheme_foo"),
    pytest.param({"time_budget_min": "soon"}, "--time_budget_min must be a number of minutes", id="budget_text"),
    pytest.param({"train#loss#fn_weight": 0.7}, "monai.losses.dice.DiceLoss takes no argument 'fn_weight'",
                 id="an_argument_train_yamls_loss_does_not_take"),
    # each read through pipeline.core.config where train.yaml and fast.yaml hand it over (a traceback from AdamW,
    # set_determinism or the DataLoader before)
    pytest.param({"learning_rate": "fast"}, "--learning_rate must be a number above 0, got 'fast'", id="lr_text"),
    pytest.param({"learning_rate": -0.1}, "--learning_rate must be a number above 0, got -0.1", id="lr_negative"),
    pytest.param({"seed": "x"}, "--seed must be a whole number, got 'x'", id="seed_text"),
    pytest.param({"batch_size": 0}, "--batch_size must be at least 1, got 0", id="batch_size_0"),
    pytest.param({"cache_rate": 2}, "--cache_rate must be a number from 0 to 1, got 2", id="cache_rate_2"),
    pytest.param({"sw_overlap": 1}, "--sw_overlap must be a number from 0 to below 1, got 1", id="sw_overlap_1"),
])
def test_a_bad_value_for_training_is_one_line_naming_the_flag(ids: dict, named: str, tiny_dataset: Path,
                                                              tmp_path: Path) -> None:
    result = _bundle("training", **{"dataset_dir": tiny_dataset, "run_dir": tmp_path / "run", "folds": 2, **ids})
    _one_error_line(result, named)


def test_a_numeric_run_folder_is_a_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    result = _bundle("training", cwd=tmp_path, dataset_dir=tiny_dataset, run_dir=20241204, folds=2, epochs=1,
                     batch_size=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "20241204" / "models" / "model.pt").is_file()


@pytest.mark.parametrize(("ids", "named"), [
    pytest.param({"sw_overlap": 1.5}, "--sw_overlap must be a number from 0 to below 1, got 1.5", id="sw_overlap_1.5"),
    pytest.param({"inferer#mode": "bogus"}, "--inferer#mode must be one of constant, gaussian, got 'bogus'",
                 id="inferer_mode"),
])
def test_a_bad_sliding_window_value_for_inference_is_one_line_before_anything_is_written(
        ids: dict, named: str, trained_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    """It failed inside the first case with a traceback, the output folder already holding the viewer tables."""
    result = _bundle("inference", dataset_dir=tiny_dataset, run_dir=trained_run, output_dir=tmp_path / "seg", **ids)
    _one_error_line(result, named)
    assert not (tmp_path / "seg").exists()


@pytest.mark.parametrize(("name", "content", "works"), [
    pytest.param("provenance.json", "[1, 2]", False, id="provenance_a_list"),
    pytest.param(".lock", '["pid"]', True, id="lock_a_list"),
])
def test_a_wrong_typed_record_in_the_output_folder(name: str, content: str, works: bool, trained_run: Path,
                                                   tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    out.mkdir()
    (out / name).write_text(content)
    result = _bundle("inference", dataset_dir=tiny_dataset, run_dir=trained_run, output_dir=out)
    if works:  # a lock file that is no lock holds nothing: taken over
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        _one_error_line(result, str(out / name), "delete")


@pytest.mark.parametrize("content", [pytest.param(b"", id="zero_bytes"), pytest.param(b"\x1f\x8b\x08", id="truncated")])
def test_a_broken_prediction_in_evaluate_is_one_line(content: bytes, tiny_dataset: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    pred = tmp_path / "pred"
    pred.mkdir()
    case = sorted(p for p in tiny_dataset.iterdir() if p.is_dir())[0]
    (pred / f"{case.name}.nii.gz").write_bytes(content)
    assert pipeline_main(["evaluate", str(pred), str(tiny_dataset), "--out", str(tmp_path / "eval")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"{case.name}.nii.gz cannot be read as NIfTI" in line


@pytest.mark.parametrize(("code", "said"), [pytest.param(errno.EROFS, "read-only", id="read_only"),
                                            pytest.param(errno.ENOSPC, "disk is full", id="full")])
def test_a_read_only_or_full_disk_under_python_m_pipeline_is_one_line(code: int, said: str, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise OSError(code, "refused", str(path))

    monkeypatch.setattr(files.Path, "mkdir", refuse)
    assert pipeline_main(["synth", str(tmp_path / "data"), "--cases", "1", "--shape", "32", "32", "24"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: cannot write") and said in line


def test_a_bug_under_python_m_pipeline_shows_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipeline.data import synthetic

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug, not the user's input")

    monkeypatch.setattr(synthetic, "synth_case", broken)
    with pytest.raises(KeyError):
        pipeline_main(["synth", str(tmp_path / "data"), "--cases", "1", "--shape", "32", "32", "24"])


def test_a_writer_that_hides_a_full_disk_is_read_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save on a full disk raises RuntimeError("[enforce fail at inline_container.cc] ... file write failed"):
    with no space left, atomic_write turns it into the disk's OSError, which the funnel names."""
    from pipeline.core.errors import user_message
    from pipeline.model.weights import atomic_torch_save

    def torch_full(obj: object, path: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr("torch.save", torch_full)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(OSError) as err:
        atomic_torch_save({"w": 1}, tmp_path / "checkpoint.pt")
    assert err.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())
    assert user_message(err.value).startswith(f"cannot write {tmp_path / 'checkpoint.pt'}: the disk is full")


@pytest.mark.parametrize("quiet", [pytest.param(False, id="monai_cli"), pytest.param(True, id="pipeline_bundle_run")])
@pytest.mark.parametrize("repeat", [pytest.param(["--fold", "1"], id="plain"),
                                    pytest.param(["--fold=1"], id="with_equals")])
@pytest.mark.usefixtures("cold_children")
def test_an_id_given_twice_to_the_bundle_cli_is_one_line_before_any_work(quiet: bool, repeat: list[str],
                                                                         tiny_dataset: Path, tmp_path: Path) -> None:
    """``make cv ARGS="--fold 1"`` passes --fold twice; MONAI's CLI would train fold 1 into every fold's folder.
    A fresh interpreter (not a warm fork): the raw CLI is checked when the configs first import the package."""
    run = tmp_path / "run"
    cmd = [*command("training", {**TINY_IDS, "dataset_dir": tiny_dataset, "run_dir": run, "fold": 0}, quiet=quiet),
           *repeat]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    _one_error_line(result, "--fold is given twice on the command line (--fold '0', then '1')", "give each id once")
    assert not run.exists()


def test_an_argument_a_component_does_not_take_is_one_line_through_the_verb_too(tiny_dataset: Path,
                                                                                 tmp_path: Path) -> None:
    result = run_module([sys.executable, "-m", "pipeline", "train", str(tiny_dataset), "--run", str(tmp_path / "run"),
                         "--set", "epochs", "1", "--set", "folds", "2", "--set", "train#loss#fn_weight", "0.7"],
                        capture_output=True, text=True, cwd=REPO, timeout=600)
    _one_error_line(result, "DiceLoss takes no argument 'fn_weight'")
