"""Checkpoints are written whole or not at all; the best one is only replaced by a better one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.model.weights import atomic_torch_save
from pipeline.training.checkpoints import AtomicCheckpointSaver


class _Unpicklable:
    def __reduce__(self):  # noqa: ANN204
        raise RuntimeError("disk full")  # stands for a failure in the middle of writing


def test_atomic_save_leaves_the_old_checkpoint_intact_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    atomic_torch_save({"w": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"w": torch.zeros(3), "bad": _Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("metrics", "saved_at"),
    [
        pytest.param([0.2, 0.5, 0.4], 0.5, id="keeps_the_best_not_the_last"),
        pytest.param([float("nan"), 0.3], 0.3, id="ignores_nan"),
    ],
)
def test_best_checkpoint_follows_the_metric(tmp_path: Path, metrics: list[float], saved_at: float) -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    saver = AtomicCheckpointSaver(str(tmp_path), net, "model.pt", mode="best", metric_name="dice")
    for m in metrics:
        with torch.no_grad():
            net.weight.fill_(m)
        saver(SimpleNamespace(state=SimpleNamespace(metrics={"dice": m})))
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["weight"].item() == pytest.approx(saved_at)


def test_last_checkpoint_is_a_plain_state_dict_loadable_with_weights_only(tmp_path: Path) -> None:
    net = torch.nn.Conv3d(4, 3, 1)
    AtomicCheckpointSaver(str(tmp_path), net, "model_last.pt", mode="last")(SimpleNamespace(state=None))
    fresh = torch.nn.Conv3d(4, 3, 1)
    fresh.load_state_dict(torch.load(tmp_path / "model_last.pt", weights_only=True))
    assert torch.equal(fresh.weight, net.weight)


@pytest.mark.parametrize("saved_on_clock", [True, False], ids=["budget_run_resumed_by_epochs",
                                                                "epoch_run_resumed_on_a_budget"])
def test_a_training_state_of_the_other_schedule_kind_is_refused_in_one_line(tmp_path: Path,
                                                                            saved_on_clock: bool) -> None:
    """Loading a ClockSchedule's state into the epoch schedule raised torch's KeyError 'lr_lambdas' (a traceback)."""
    from pipeline.core.errors import UserError
    from pipeline.training.checkpoints import TrainingCheckpoint

    net = torch.nn.Linear(2, 2)
    state = {"trainer": {"epoch": 1, "max_epochs": 5, "epoch_length": 1, "iteration": 1}, "model": net.state_dict(),
             "rng": []}
    if saved_on_clock:
        state["clock"] = {"spent": 10.0}
    atomic_torch_save(state, tmp_path / "checkpoint.pt")
    clock = None if saved_on_clock else SimpleNamespace(state_dict=dict, load_state_dict=lambda s: None)
    saver = TrainingCheckpoint(str(tmp_path), {"model": net, "clock": clock})
    engine = SimpleNamespace(state=SimpleNamespace(max_epochs=5))
    kind = "on a time budget" if saved_on_clock else "by epochs"
    with pytest.raises(UserError, match=f"was trained {kind}.*--run_dir"):
        saver.load(engine)
