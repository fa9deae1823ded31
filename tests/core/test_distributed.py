"""Several processes: torchrun + multi_gpu_train.yaml trains with DDP, and its sharded validation Dice equals a
one-process evaluation of the same cases (CI runs 2 CPU processes with gloo; no GPU is involved)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.core import distributed
from tests.helpers import TINY_IDS, parse_bundle, write_uneven_datalist

TINY_NET = TINY_IDS




@pytest.fixture(scope="module")
def uneven_datalist(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_uneven_datalist(tiny_dataset, tmp_path_factory.mktemp("datalist") / "datalist.json")




@pytest.mark.parametrize(
    ("n_items", "even_divisible", "expected"),
    [
        pytest.param(5, False, [[0, 2, 4], [1, 3]], id="validation_5_on_2_ranks_each_case_once"),
        pytest.param(5, True, [[0, 2, 4], [1, 3, 0]], id="training_5_on_2_ranks_padded_to_equal_steps"),
        pytest.param(1, True, [[0], [0]], id="training_1_case_on_2_ranks_repeated"),
        pytest.param(0, False, [[], []], id="validation_none_under_fold_all"),
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




def _budget_worker(rank: int, init_file: str, results: str) -> None:
    import time

    import torch.distributed as dist

    from pipeline.training.budget import Clock

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        if rank == 1:
            time.sleep(0.4)  # this rank's start (its share of the cache, say) took longer
        clock = Clock(0.02)  # 1.2 s
        clock.start()
        iterations, rates = 0, []
        while True:
            time.sleep(0.05)  # one training step, in lockstep (DDP)
            clock.tick()
            iterations += 1
            rates.append(round(clock.fraction(), 9))
            if clock.expired():
                break
        Path(results, f"rank{rank}").write_text(repr((iterations, rates)))
    finally:
        dist.destroy_process_group()


def test_a_time_budget_stops_every_rank_at_the_same_iteration_with_the_same_learning_rate(tmp_path: Path) -> None:
    """Each process's clock started when its own start ended: ranks apart by more than a step stopped their epochs
    at different iterations and waited in different collectives (a hang at the end of every multi-GPU budget)."""
    results = tmp_path / "results"
    results.mkdir()
    torch.multiprocessing.spawn(_budget_worker, nprocs=2, args=(str(tmp_path / "init"), str(results)))
    seen = [eval((results / f"rank{r}").read_text()) for r in range(2)]  # noqa: S307 - our own repr
    assert seen[0] == seen[1]  # the same stop and the same schedule fraction at every step
    assert seen[0][0] >= 5 and seen[0][1][-1] == 1.0
