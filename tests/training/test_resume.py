"""Surviving interruption: checkpoint.pt after every epoch, --resume true continues it exactly, a seed makes a run
repeatable, and inference run again skips the cases already segmented."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.utils import set_determinism

from pipeline.data.layouts import discover_cases
from pipeline.inference.outputs import InferenceReport, pending_items
from pipeline.inference.predict import write_label_like
from pipeline.training.checkpoints import TrainingCheckpoint
from tests.helpers import TINY_IDS as TINY_NET
from tests.helpers import parse_bundle, write_uneven_datalist

#: fold 1 of the uneven datalist validates on 1 case; fold 0's 3 cases train: 3 steps per epoch with batch 1
TRAIN = {"fold": 1, "batch_size": 1, "num_samples": 1, "warmup_epochs": 0, **TINY_NET}


@pytest.fixture(scope="module")
def uneven_datalist(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_uneven_datalist(tiny_dataset, tmp_path_factory.mktemp("datalist") / "datalist.json")


def _parser(datalist: Path, run_dir: Path, **overrides: object) -> ConfigParser:
    return parse_bundle("training", {"datalist": str(datalist), "run_dir": str(run_dir), **TRAIN, **overrides})


def _train(parser: ConfigParser, stop_after_epoch: int | None = None) -> dict[str, torch.Tensor]:
    """Run `initialize` then the trainer in this process, as `monai.bundle run training` does; the weights."""
    from ignite.engine import Events

    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    if stop_after_epoch is not None:  # an interruption between two epochs
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=stop_after_epoch), lambda e: e.terminate())
    trainer.run()
    return {k: v.clone() for k, v in parser.get_parsed_content("network").state_dict().items()}


@pytest.fixture(autouse=True)
def _forget_the_seed() -> None:
    yield
    set_determinism(seed=None)  # the training config seeds the global generators of this process


def test_same_seed_and_data_give_the_same_weights_after_three_steps(uneven_datalist: Path, tmp_path: Path) -> None:
    initial = _parser(uneven_datalist, tmp_path / "init")
    initial.get_parsed_content("initialize")
    start = {k: v.clone() for k, v in initial.get_parsed_content("network").state_dict().items()}
    first = _train(_parser(uneven_datalist, tmp_path / "a", epochs=1, val_interval=10))
    second = _train(_parser(uneven_datalist, tmp_path / "b", epochs=1, val_interval=10))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], start[k]) for k in first)  # three steps did move the weights


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(uneven_datalist: Path, tmp_path: Path) -> None:
    """Model, optimiser, LR schedule, epoch counter, best metric and every random state come back: the run cut
    after epoch 1 and resumed ends with the same weights, bit for bit, as the run that never stopped."""
    plan = {"epochs": 3, "val_interval": 2}  # epoch 3 shows a schedule not restored (epoch 2's lr is the optimiser's)
    whole = _train(_parser(uneven_datalist, tmp_path / "whole", **plan))
    _train(_parser(uneven_datalist, tmp_path / "cut", **plan), stop_after_epoch=1)
    assert torch.load(tmp_path / "cut/models/checkpoint.pt", weights_only=True)["trainer"]["epoch"] == 1
    resumed = _train(_parser(uneven_datalist, tmp_path / "cut", resume=True, **plan))

    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    a, b = (torch.load(tmp_path / run / "models/checkpoint.pt", weights_only=True) for run in ("whole", "cut"))
    assert a["trainer"] == b["trainer"] == {"epoch": 3, "iteration": 9, "epoch_length": 3, "max_epochs": 3}
    assert a["best_model"] == b["best_model"]
    assert a["lr_scheduler"]["last_epoch"] == b["lr_scheduler"]["last_epoch"] == 3
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    best_a, best_b = (torch.load(tmp_path / run / "models/model.pt", weights_only=True) for run in ("whole", "cut"))
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


@pytest.mark.parametrize(("epochs", "val_interval", "validated"), [
    pytest.param(3, 2, [2, 3], id="interval_then_the_last_epoch"),
    pytest.param(2, 5, [2], id="run_shorter_than_the_interval_still_validates_once"),
    pytest.param(2, 1, [1, 2], id="last_epoch_on_the_interval_validated_once"),
])
def test_training_validates_every_interval_and_after_the_last_epoch(uneven_datalist: Path, tmp_path: Path,
                                                                    epochs: int, val_interval: int,
                                                                    validated: list[int]) -> None:
    from ignite.engine import Events

    parser = _parser(uneven_datalist, tmp_path, epochs=epochs, val_interval=val_interval)
    seen: list[int] = []
    parser.get_parsed_content("validate#evaluator").add_event_handler(
        Events.COMPLETED, lambda engine: seen.append(engine.state.epoch))
    _train(parser)
    assert seen == validated
    assert (tmp_path / "models" / "model.pt").is_file()  # inference has a model even after a short run


def test_a_run_resumed_with_more_epochs_stretches_its_cosine_schedule_to_the_new_end(
        uneven_datalist: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Restored as saved, the cosine of a 2-epoch plan would climb back to the peak rate by epoch 4."""
    rate, run = 0.01, tmp_path / "run"
    _train(_parser(uneven_datalist, run, epochs=2, val_interval=10, learning_rate=rate))
    with caplog.at_level("WARNING", logger="pipeline.training.checkpoints"):
        parser = _parser(uneven_datalist, run, resume=True, epochs=4, val_interval=10, learning_rate=rate)
        _train(parser)
    assert "the first start planned 2 epochs, this run 4" in caplog.text
    ckpt = torch.load(run / "models/checkpoint.pt", weights_only=True)
    assert ckpt["trainer"]["epoch"] == 4 and ckpt["lr_scheduler"]["t_total"] == 4
    # no warm-up: after epoch k of 4 the rate is the peak times (1 + cos(pi * k / 4)) / 2, computed here
    optimiser = parser.get_parsed_content("train#optimizer")
    assert optimiser.param_groups[0]["lr"] == pytest.approx(rate * (1 + math.cos(math.pi)) / 2, abs=1e-12)
    seen = [float(v) for v in parser.get_parsed_content("train#lr_scheduler").get_last_lr()]
    assert seen == pytest.approx([0.0])


def test_after_a_resume_a_worse_metric_does_not_replace_the_best_model(tmp_path: Path) -> None:
    from pipeline.training.checkpoints import AtomicCheckpointSaver

    def engine(dice: float) -> SimpleNamespace:
        state = SimpleNamespace(epoch=1, iteration=1, epoch_length=1, max_epochs=3, metrics={"dice": dice})
        return SimpleNamespace(state=state, data_loader=None, scaler=None)

    def objects(weight: float) -> dict:
        net = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(net.weight, weight)
        return {"model": net, "best_model": AtomicCheckpointSaver(str(tmp_path), net, mode="best", metric_name="dice")}

    before = objects(0.8)
    before["best_model"](engine(0.8))  # model.pt: weight 0.8
    TrainingCheckpoint(str(tmp_path), before).save(engine(0.8))

    after = objects(0.5)  # a new process, resumed; its network is then trained to 0.5 and validates worse
    TrainingCheckpoint(str(tmp_path), after, resume=True).load(engine(0.8))
    torch.nn.init.constant_(after["model"].weight, 0.5)
    after["best_model"](engine(0.5))
    assert after["best_model"].best == pytest.approx(0.8)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["weight"].item() == pytest.approx(0.8)


def test_resume_flag_from_the_command_line_must_be_true_or_false(tmp_path: Path) -> None:
    assert TrainingCheckpoint(str(tmp_path), {}, resume="true").resume is True
    assert TrainingCheckpoint(str(tmp_path), {}, resume="False").resume is False
    with pytest.raises(ValueError, match="resume must be true or false, got 'maybe'"):
        TrainingCheckpoint(str(tmp_path), {}, resume="maybe")


def _epoch_in(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, weights_only=True)["trainer"]["epoch"])


# ---- inference ---------------------------------------------------------------------------------------------


def test_inference_skips_cases_with_a_valid_output_and_redoes_broken_ones(tiny_dataset: Path, tmp_path: Path) -> None:
    cases = discover_cases(tiny_dataset)
    items = [c.to_item() for c in cases]
    out = tmp_path / "seg"
    shape = nib.load(cases[0].images[0]).shape
    report = InferenceReport(out, model="A")
    for case in cases[:3]:  # written by model A from these inputs (provenance.json)
        path = write_label_like(np.zeros(shape, np.uint8), case.images[0], out / f"{case.case_id}.nii.gz")
        report.wrote(case.case_id, path, case.images)
    whole = out / f"{cases[1].case_id}.nii.gz"
    whole.write_bytes(whole.read_bytes()[:-40])  # truncated: the header loads, the voxels do not
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), out / f"{cases[2].case_id}.nii.gz")
    with pytest.raises((EOFError, OSError)):  # what a reader of the truncated file would hit
        gzip.decompress(whole.read_bytes())

    again = InferenceReport(out, model="A")
    assert [it["case"] for it in pending_items(items, out, report=again)] == [c.case_id for c in cases[1:]]
    assert pending_items(items, out, overwrite="true", report=again) == items


def test_inference_config_filters_the_cases_before_the_network_runs(tiny_dataset: Path, tmp_path: Path) -> None:
    case = discover_cases(tiny_dataset)[0]
    out = tmp_path / "seg"
    path = write_label_like(np.zeros(nib.load(case.images[0]).shape, np.uint8), case.images[0],
                            out / f"{case.case_id}.nii.gz")
    InferenceReport(out, model=None).wrote(case.case_id, path, case.images)  # no checkpoint here: model id None
    counts = {}
    for overwrite in (False, True):
        parser = parse_bundle("inference", {"dataset_dir": str(tiny_dataset), "output_dir": str(out), "device": "cpu",
                                            "overwrite": overwrite})
        counts[overwrite] = len(parser.get_parsed_content("dataset"))
    assert counts == {False: 3, True: 4}


@pytest.mark.parametrize("second", ["same_files_changed", "same_files_touched", "the_same_files_moved",
                                    "another_case_of_the_same_name"])
def test_inference_redoes_a_changed_case_but_refuses_another_case_of_the_same_name(tiny_dataset: Path, tmp_path: Path,
                                                                                    second: str) -> None:
    """One case folder at a time into one output folder (a single case is not checked against a dataset's roots):
    the same files changed are segmented again; the same contents (touched, or moved elsewhere) are kept; /b/CASE
    after /a/CASE, other images, would have replaced /a's segmentation."""
    import shutil

    from pipeline.core.errors import UserError

    data = tmp_path / "a"
    shutil.copytree(tiny_dataset, data)  # its files are touched below: not the shared fixture's
    case = discover_cases(data)[0]
    out = tmp_path / "seg"
    path = write_label_like(np.zeros(nib.load(case.images[0]).shape, np.uint8), case.images[0],
                            out / f"{case.case_id}.nii.gz")
    InferenceReport(out, model="A").wrote(case.case_id, path, case.images)
    before = path.read_bytes()
    item = case.to_item()
    if second == "same_files_changed":
        img = nib.load(case.images[0])
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine, img.header), case.images[0])
        assert pending_items([item], out, report=InferenceReport(out, model="A")) == [item]
        return
    if second == "same_files_touched":
        Path(case.images[0]).touch()  # a newer modification time, the same bytes
        assert pending_items([item], out, report=InferenceReport(out, model="A")) == []
        return
    other = tmp_path / "b" / Path(case.images[0]).parent.name
    shutil.copytree(Path(case.images[0]).parent, other)
    item = {**case.to_item(), "image": [str(other / Path(p).name) for p in case.images]}
    if second == "the_same_files_moved":
        shutil.rmtree(Path(case.images[0]).parent)
        assert pending_items([item], out, report=InferenceReport(out, model="A")) == []
        assert path.read_bytes() == before
        return
    flair = other / Path(case.images[-1]).name
    img = nib.load(flair)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine, img.header), flair)
    with pytest.raises(UserError, match=rf"already holds a segmentation of case {case.case_id} made from other "
                                        r"images .* --overwrite true"):
        pending_items([item], out, report=InferenceReport(out, model="A"))
    assert path.read_bytes() == before
    assert pending_items([item], out, overwrite=True, report=InferenceReport(out, model="A")) == [item]
