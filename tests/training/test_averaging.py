"""The moving average of the weights (``ema_decay``): computed as defined, validated and saved in place of the
weights, handed back to training after each validation, carried through a resume, and off by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.utils import set_determinism

from pipeline.core.errors import UserError
from pipeline.training.averaging import WeightAverage
from tests.helpers import write_uneven_datalist
from tests.training.test_resume import _parser, _train


@pytest.fixture(scope="module")
def uneven_datalist(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_uneven_datalist(tiny_dataset, tmp_path_factory.mktemp("datalist") / "datalist.json")


@pytest.fixture(autouse=True)
def _forget_the_seed() -> None:
    yield
    set_determinism(seed=None)


def _net(value: float) -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def test_the_average_follows_its_definition_with_the_warmed_up_decay() -> None:
    net, decay = _net(0.0), 0.9
    average = WeightAverage(net, decay=decay)
    expected, steps = None, [0.0, 1.0, 3.0, -2.0, 5.0]
    for n, value in enumerate(steps):
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(value)
        average.update()
        d = min(decay, (1 + n) / (10 + n))  # the warm-up: 1/10, 2/11, ... up to decay
        expected = value if expected is None else d * expected + (1 - d) * value
    state = average.averaged_state_dict()
    assert state["0.weight"] == pytest.approx(torch.full((1, 2), expected))
    assert state["1.bias"].item() == pytest.approx(expected)
    assert state["1.num_batches_tracked"].dtype == torch.int64  # integer buffers are the network's own
    assert average.updates == len(steps)


def test_swapping_in_and_out_gives_the_network_its_own_weights_back_exactly() -> None:
    net = _net(0.25)
    average = WeightAverage(net, decay=0.5)
    average.update()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    own = {k: v.clone() for k, v in net.state_dict().items()}
    average.swap_in()
    assert net.state_dict()["0.weight"].eq(0.25).all()
    average.swap_in()  # twice does not save the average as the network's own
    average.swap_out()
    assert all(torch.equal(own[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize(("decay", "message"), [
    pytest.param(1, "--ema_decay 1 would never move the average", id="one"),
    pytest.param(1.5, "--ema_decay must be a number from 0 to 1", id="above_one"),
    pytest.param("abc", "--ema_decay must be a number from 0 to 1", id="not_a_number"),
])
def test_a_decay_that_cannot_average_is_refused_in_one_line(decay: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        WeightAverage(torch.nn.Linear(1, 1), decay=decay)


def _saved(run: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(run / "models" / name, weights_only=True)


def test_with_a_decay_validation_and_both_models_hold_the_average_and_training_its_own_weights(
        uneven_datalist: Path, tmp_path: Path) -> None:
    from ignite.engine import Events

    parser = _parser(uneven_datalist, tmp_path, epochs=2, val_interval=1, ema_decay=0.5)
    validated: list[dict[str, torch.Tensor]] = []
    parser.get_parsed_content("validate#evaluator").add_event_handler(Events.ITERATION_COMPLETED, lambda e: (
        validated.append({k: v.clone() for k, v in parser.get_parsed_content("network").state_dict().items()})))
    weights = _train(parser)
    average = parser.get_parsed_content("train#weight_average").averaged_state_dict()

    assert not all(torch.equal(weights[k], average[k]) for k in weights)  # the two differ after 6 steps
    assert all(torch.equal(validated[-1][k], average[k]) for k in average)  # the last validation saw the average
    last = _saved(tmp_path, "model_last.pt")
    assert all(torch.equal(last[k], average[k]) for k in average)
    best = _saved(tmp_path, "model.pt")  # one of the two validated averages
    assert any(all(torch.equal(best[k], seen[k]) for k in best) for seen in validated)
    assert "weight_average" in _saved(tmp_path, "checkpoint.pt")


def test_without_a_decay_the_weights_themselves_are_validated_and_saved(uneven_datalist: Path,
                                                                        tmp_path: Path) -> None:
    weights = _train(_parser(uneven_datalist, tmp_path, epochs=1, val_interval=1))
    for name in ("model_last.pt", "model.pt"):
        saved = _saved(tmp_path, name)
        assert all(torch.equal(saved[k], weights[k]) for k in weights)
    assert "weight_average" not in _saved(tmp_path, "checkpoint.pt")  # a checkpoint as before: old ones resume


def test_a_resumed_run_with_a_decay_ends_with_the_average_of_an_uninterrupted_one(uneven_datalist: Path,
                                                                                   tmp_path: Path) -> None:
    plan = {"epochs": 3, "val_interval": 2, "ema_decay": 0.5}
    _train(_parser(uneven_datalist, tmp_path / "whole", **plan))
    _train(_parser(uneven_datalist, tmp_path / "cut", **plan), stop_after_epoch=1)
    _train(_parser(uneven_datalist, tmp_path / "cut", resume=True, **plan))
    for name in ("model_last.pt", "model.pt"):
        a, b = _saved(tmp_path / "whole", name), _saved(tmp_path / "cut", name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_resuming_an_averaged_run_without_its_average_is_refused(uneven_datalist: Path, tmp_path: Path) -> None:
    """Dropped silently, the average would leave model.pt's best (an average's score) to be beaten by raw weights."""
    plan = {"epochs": 2, "val_interval": 1}
    _train(_parser(uneven_datalist, tmp_path, ema_decay=0.5, **plan), stop_after_epoch=1)
    with pytest.raises(UserError, match=r"holds a \['weight_average'\] state that this run does not take"):
        _train(_parser(uneven_datalist, tmp_path, resume=True, **plan))


def test_a_restored_average_lives_on_the_networks_device() -> None:
    """Checkpoints load on the CPU; on a GPU the first update then mixed devices. A network on the meta device
    stands in for the GPU."""
    average = WeightAverage(_net(1.0), decay=0.5)
    average.update()
    elsewhere = torch.nn.Sequential(torch.nn.Linear(2, 1, device="meta"), torch.nn.BatchNorm1d(1, device="meta"))
    restored = WeightAverage(elsewhere, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.shadow and all(v.device.type == "meta" for v in restored.shadow.values())


def test_the_training_state_loads_as_the_average_it_validated(uneven_datalist: Path, tmp_path: Path) -> None:
    """--ckpt_path checkpoint.pt gave the raw weights of a run whose model.pt and model_last.pt hold the average."""
    from pipeline.model.weights import load_weights

    _train(_parser(uneven_datalist, tmp_path, epochs=1, val_interval=1, ema_decay=0.5))
    parser = _parser(uneven_datalist, tmp_path / "other", epochs=1)
    network = parser.get_parsed_content("network")
    load_weights(network, tmp_path / "models" / "checkpoint.pt")
    last = _saved(tmp_path, "model_last.pt")
    assert all(torch.equal(v, last[k]) for k, v in network.state_dict().items())


def test_a_weight_on_missed_voxels_outside_0_1_is_refused_in_one_line() -> None:
    from pipeline.training.losses import DiceBCELoss

    for bad in (1, 0, "abc", None):
        with pytest.raises(UserError, match="train#loss#fn_weight must be a number between 0 and 1"):
            DiceBCELoss(fn_weight=bad)
