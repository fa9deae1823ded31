"""Several processes: torchrun + multi_gpu_train.yaml trains with DDP, and its sharded validation Dice equals a
one-process evaluation of the same cases (CI runs 2 CPU processes with gloo; no GPU is involved)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.bundle import command
from pipeline.core import distributed
from pipeline.data.datalist import build_datalist
from tests.conftest import REPO, parse_bundle

TINY_NET = {"roi_size": [32, 32, 32], "unet_channels": [8, 16, 32], "num_res_units": 1, "num_workers": 0,
            "device": "cpu"}


def write_uneven_datalist(dataset: Path, path: Path) -> Path:
    """The 4 tiny cases as a datalist: fold 0 holds 3 cases, fold 1 one case (3 does not divide by 2)."""
    datalist = build_datalist(dataset, folds=2, seed=0)
    for i, item in enumerate(sorted(datalist["training"], key=lambda it: it["case"])):
        item["fold"] = 0 if i < 3 else 1
    path.write_text(json.dumps(datalist))
    return path


@pytest.fixture(scope="module")
def uneven_datalist(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_uneven_datalist(tiny_dataset, tmp_path_factory.mktemp("datalist") / "datalist.json")


def _cli_args(overrides: dict) -> list[str]:
    return [a for k, v in overrides.items() for a in (f"--{k}", json.dumps(v) if isinstance(v, list) else str(v))]


@pytest.mark.parametrize(
    ("n_items", "even_divisible", "expected"),
    [
        pytest.param(5, False, [[0, 2, 4], [1, 3]], id="validation_5_on_2_ranks_each_case_once"),
        pytest.param(5, True, [[0, 2, 4], [1, 3, 0]], id="training_5_on_2_ranks_padded_to_equal_steps"),
        pytest.param(1, True, [[0], [0]], id="training_1_case_on_2_ranks_repeated"),
    ],
)
def test_shard_deals_cases_to_ranks(monkeypatch: pytest.MonkeyPatch, n_items: int, even_divisible: bool,
                                    expected: list[list[int]]) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    shards = []
    for r in range(2):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shards.append(distributed.shard(list(range(n_items)), even_divisible=even_divisible))
    assert shards == expected


def test_shard_refuses_fewer_validation_cases_than_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.raises(ValueError, match="3 validation case.* cannot be shared by 4 processes"):
        distributed.shard([0, 1, 2], even_divisible=False)


def test_shard_is_the_identity_in_one_process() -> None:
    assert distributed.shard([3, 1, 2], even_divisible=True, shuffle=True) == [3, 1, 2]


def test_init_distributed_outside_torchrun_says_how_to_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node=N"):
        distributed.init_distributed("cpu")


def test_multi_gpu_overlay_parses_over_train_yaml() -> None:
    parser = parse_bundle("training", multi_gpu=True)
    # the group is joined before anything else runs, so that rank 0 alone checks the run folder and runs the data
    # check (`split`)
    steps = ["init_distributed" if "init_distributed" in step else step for step in parser["initialize"]]
    assert steps.index("init_distributed") < steps.index("$@run_record") < steps.index("$@split_record")
    # train.yaml's steps, with only its seeding replaced (multi_gpu_train.yaml sets `initialize#1`)
    single = parse_bundle("training")["initialize"]
    assert [s for s in single if "set_determinism" not in s] == [s for s in steps if s != "init_distributed"]
    assert len(single) == len(steps)
    assert "wrap_ddp" in parser["train#trainer#network"]
    assert parser["validate#evaluator#network"] == "@network"  # validation runs the plain module, no collectives


def _rank_zero_work(path: str, fail: bool) -> list[int]:
    """What only rank 0 should run: appends a line to ``path`` (to count the calls); raises if ``fail``."""
    with open(path, "a") as f:
        f.write(f"called by rank {distributed.rank()}\n")
    if fail:
        raise ValueError("case BraTS2021_00007: label file unreadable")
    return [distributed.rank(), 42]


def _computed_on_main_process_worker(rank: int, init_file: str, calls: str, results: str, fail: bool) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        outcome = repr(distributed.computed_on_main_process(_rank_zero_work, calls, fail))
    except Exception as e:  # noqa: BLE001 - the test reads what each rank saw
        outcome = f"{type(e).__name__}: {e}"
    finally:
        dist.destroy_process_group()
    Path(results, f"rank{rank}").write_text(outcome)


@pytest.mark.slow
@pytest.mark.parametrize("fail", [pytest.param(False, id="result_sent_to_every_rank"),
                                  pytest.param(True, id="rank0_error_stops_every_rank")])
def test_computed_on_main_process_runs_once_on_rank0(tmp_path: Path, fail: bool) -> None:
    calls, results = tmp_path / "calls.txt", tmp_path / "results"
    results.mkdir()
    torch.multiprocessing.spawn(_computed_on_main_process_worker, nprocs=2,
                                args=(str(tmp_path / "init"), str(calls), str(results), fail))
    assert calls.read_text() == "called by rank 0\n"  # once, by rank 0
    seen = [(results / f"rank{r}").read_text() for r in range(2)]
    if fail:
        assert seen[0] == "ValueError: case BraTS2021_00007: label file unreadable"
        assert seen[1] == "RuntimeError: ValueError on rank 0: case BraTS2021_00007: label file unreadable"
    else:
        assert seen == ["[0, 42]", "[0, 42]"]  # rank 0's result on both


def test_computed_on_main_process_is_the_call_in_one_process(tmp_path: Path) -> None:
    assert distributed.computed_on_main_process(_rank_zero_work, str(tmp_path / "calls.txt"), False) == [0, 42]


def _one_process_dice(datalist: Path, run_dir: Path, checkpoint: Path) -> tuple[float, torch.Tensor]:
    """val_mean_dice of ``checkpoint`` on fold 0, evaluated by train.yaml's evaluator in this process."""
    parser = parse_bundle("training", {"datalist": str(datalist), "run_dir": str(run_dir), "fold": 0, **TINY_NET})
    parser.get_parsed_content("network").load_state_dict(torch.load(checkpoint, weights_only=True))
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    per_case = parser.get_parsed_content("validate#key_metric")["val_mean_dice"].metric_fn.get_buffer()
    return float(evaluator.state.metrics["val_mean_dice"]), per_case


@pytest.mark.slow
def test_two_gloo_processes_train_validate_and_equal_the_one_process_dice(uneven_datalist: Path,
                                                                          tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *command("training", multi_gpu=True)[1:],  # python -m monai.bundle run ... under torchrun
           *_cli_args({"datalist": uneven_datalist, "fold": 0, "run_dir": run, "val_interval": 2, "batch_size": 1,
                       **TINY_NET})]

    # --resume true with no checkpoint yet starts at epoch 1, after the ranks have agreed on it
    result = subprocess.run([*cmd, "--epochs", "2", "--resume", "true"], capture_output=True, text=True, cwd=REPO,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    checkpoint = torch.load(run / "models" / "checkpoint.pt", weights_only=True)
    assert checkpoint["trainer"]["epoch"] == 2 and checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert log.count("process 1 of 2 on cpu (backend gloo)") == 1
    assert log.count("saved best val_mean_dice") == 1  # logs and checkpoints: rank 0 only
    assert log.count("data check: discovery and 4 labelled case(s)") == 1  # rank 0 alone checks the data
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1

    # validated once, at epoch 2, with the weights that model.pt holds; 3 cases on 2 ranks: 2 + 1
    two_process = checkpoint["best_model"]["best"]
    one_process, per_case = _one_process_dice(uneven_datalist, tmp_path / "eval", run / "models" / "model.pt")
    assert two_process == pytest.approx(one_process, rel=1e-5, abs=1e-7)
    # the comparison would catch a case dropped or counted twice: each such mean is far from the true one
    means = per_case.mean(dim=1)
    assert len(means) == 3
    for rows in [*itertools.combinations(range(3), 2), *([*range(3), i] for i in range(3))]:
        assert abs(float(means[list(rows)].mean()) - one_process) > 1e-4, rows
