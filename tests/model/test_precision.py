"""pipeline.model.precision: where the network computes in half precision (CUDA AMP ids, CPU bf16 autocast, cuDNN
autotuning), and that resolving the bundle's ids never changes a process-wide setting."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.model import precision
from tests.helpers import TINY_NETWORK, parse_bundle

TINY_IDS = {**TINY_NETWORK, "device": "cpu"}


def _process_settings() -> tuple[bool, bool, torch.dtype]:
    return torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.get_autocast_dtype("cuda")


@pytest.fixture
def restored_settings() -> Iterator[None]:
    """Give back what a test may change for the process: cuDNN autotuning and determinism, the CUDA autocast
    dtype, and the random generators (a training ``initialize`` seeds them)."""
    import random

    import numpy as np

    saved = _process_settings()
    rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.set_autocast_dtype("cuda", saved[2])
    random.setstate(rng[0])
    np.random.set_state(rng[1])
    torch.set_rng_state(rng[2])


@pytest.fixture
def simulated_bf16_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The configs' view of a CUDA device with bfloat16 (``on_cuda`` true, bf16 supported), on this CPU: the
    engines are built as on a GPU; nothing here runs a CUDA kernel."""
    monkeypatch.setattr(precision, "on_cuda", lambda device: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


def _parser(run_id: str, variants: dict, **overrides: object) -> ConfigParser:
    """The bundle of ``run_id`` with ``variants`` (``fast=``; pipeline.bundle's order), tiny and on the CPU."""
    with warnings.catch_warnings():  # over inference.yaml MONAI warns that `+train` has nothing to merge into
        warnings.filterwarnings("ignore", message=r"Can't merge entry \['\+train'\]")
        return parse_bundle(run_id, {"data_check": "off", **TINY_IDS, **overrides}, **variants)


@pytest.mark.parametrize("dtype, expected", [
    pytest.param(torch.bfloat16, torch.bfloat16, id="bfloat16"),
    pytest.param(torch.float16, torch.float16, id="float16"),
    pytest.param("bfloat16", torch.bfloat16, id="name"),
    pytest.param("torch.float16", torch.float16, id="qualified_name"),
])
def test_autocast_kwargs_carry_a_half_precision_dtype(dtype: object, expected: torch.dtype) -> None:
    assert precision.autocast_kwargs(dtype) == {"dtype": expected}


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="float32"), pytest.param("int8", id="int8")])
def test_autocast_kwargs_refuse_a_full_precision_or_integer_dtype(dtype: object) -> None:
    with pytest.raises(ValueError, match="amp_dtype must be torch.bfloat16 or torch.float16"):
        precision.autocast_kwargs(dtype)


@pytest.mark.parametrize("value, expected", [pytest.param(True, True, id="true"),
                                             pytest.param("false", False, id="false_string")])
def test_set_cudnn_benchmark_sets_the_process_setting(value: object, expected: bool, restored_settings: None) -> None:
    torch.backends.cudnn.benchmark = not expected
    precision.set_cudnn_benchmark(value)
    assert torch.backends.cudnn.benchmark is expected


@pytest.mark.parametrize("run_id, fast, engines", [
    pytest.param("training", False, ["train#trainer", "validate#evaluator"], id="training"),
    pytest.param("training", True, ["train#trainer", "validate#evaluator"], id="training_fast"),
    pytest.param("inference", False, ["evaluator"], id="inference"),
    pytest.param("inference", True, ["evaluator"], id="inference_fast"),
])
def test_every_engine_gets_the_amp_dtype_and_resolving_the_ids_changes_no_process_setting(
        run_id: str, fast: bool, engines: list[str], tiny_dataset: Path, tmp_path: Path,
        restored_settings: None) -> None:
    torch.backends.cudnn.benchmark = False
    torch.set_autocast_dtype("cuda", torch.float16)
    before = _process_settings()
    parser = _parser(run_id, {"fast": fast}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path), folds=2)
    dtype = parser.get_parsed_content("amp_dtype")
    assert dtype in (torch.float16, torch.bfloat16)
    for engine_id in engines:
        engine = parser.get_parsed_content(engine_id)
        assert engine.amp is precision.on_cuda("cpu") and engine.amp_kwargs == {"dtype": dtype}
    parser.get_parsed_content("cudnn_benchmark")
    assert _process_settings() == before


@pytest.mark.parametrize("run_id, fast, engines, dtype", [
    pytest.param("training", False, ["train#trainer", "validate#evaluator"], torch.float16, id="training"),
    pytest.param("training", True, ["train#trainer", "validate#evaluator"], torch.bfloat16, id="training_fast"),
    pytest.param("inference", False, ["evaluator"], torch.float16, id="inference"),
    pytest.param("inference", True, ["evaluator"], torch.bfloat16, id="inference_fast"),
])
def test_on_a_bf16_gpu_fast_gives_every_engine_bf16_amp_without_touching_the_process(
        run_id: str, fast: bool, engines: list[str], dtype: torch.dtype, tiny_dataset: Path, tmp_path: Path,
        simulated_bf16_gpu: None, restored_settings: None) -> None:
    torch.backends.cudnn.benchmark = False
    torch.set_autocast_dtype("cuda", torch.float16)
    before = _process_settings()
    parser = _parser(run_id, {"fast": fast}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path), folds=2,
                     cache_device="cpu", num_workers=0)
    with warnings.catch_warnings():  # torch warns that a GradScaler on a machine without CUDA is disabled
        warnings.simplefilter("ignore")
        built = [parser.get_parsed_content(engine_id) for engine_id in engines]
    for engine in built:
        assert engine.amp is True and engine.amp_kwargs == {"dtype": dtype}
    assert parser.get_parsed_content("cudnn_benchmark") is fast
    assert _process_settings() == before  # the old `amp` id set the autocast dtype and cuDNN autotuning here


@pytest.mark.parametrize("value, expected", [pytest.param("false", False, id="false_string"),
                                             pytest.param("true", True, id="true_string")])
def test_amp_given_on_the_command_line_as_a_string_is_read_as_a_flag(value: str, expected: bool, tiny_dataset: Path,
                                                                     tmp_path: Path) -> None:
    parser = _parser("training", {}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path), folds=2, amp=value)
    with warnings.catch_warnings():  # torch warns that a GradScaler on a machine without CUDA is disabled
        warnings.simplefilter("ignore")
        assert parser.get_parsed_content("train#trainer").amp is expected
        assert parser.get_parsed_content("validate#evaluator").amp is expected


@pytest.mark.parametrize("run_id, variants, seeding", [
    pytest.param("training", {}, "set_determinism", id="training"),
    pytest.param("training", {"multi_gpu": True}, "init_distributed", id="multi_gpu_training"),
    pytest.param("inference", {}, None, id="inference"),
])
def test_every_stage_sets_cudnn_autotuning_in_initialize_after_any_seeding(run_id: str, variants: dict,
                                                                           seeding: str | None) -> None:
    """``set_determinism`` turns autotuning off, so the step that sets it must come after the seeding; a stage
    that replaces ``initialize`` (multi_gpu_train.yaml) must keep it."""
    steps = [str(step) for step in parse_bundle(run_id, **variants)["initialize"]]
    at = [i for i, step in enumerate(steps) if "set_cudnn_benchmark(@cudnn_benchmark)" in step]
    assert len(at) == 1
    if seeding:
        assert [i for i, step in enumerate(steps) if seeding in step][0] < at[0]


def test_training_initialize_sets_cudnn_autotuning_after_seeding(tiny_dataset: Path, tmp_path: Path,
                                                                 restored_settings: None) -> None:
    """``set_determinism`` turns autotuning off; the explicit step after it sets the ``cudnn_benchmark`` id."""
    for wanted in (True, False):
        torch.backends.cudnn.benchmark = not wanted
        parser = _parser("training", {}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path / f"run_{wanted}"),
                         folds=2, cudnn_benchmark=wanted)
        for i in range(len(parser["initialize"])):
            parser.get_parsed_content(f"initialize#{i}")
        assert torch.backends.cudnn.benchmark is wanted


def _recording_dtypes(network: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    first_conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv3d))
    first_conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    return seen


def test_cpu_autocast_computes_in_bf16_returns_float32_and_keeps_the_module_and_its_state_dict() -> None:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    reference = UNet(3, 4, 3, (8, 16, 32), (2, 2), num_res_units=1, norm="instance")
    wrapped = UNet(3, 4, 3, (8, 16, 32), (2, 2), num_res_units=1, norm="instance")
    wrapped.load_state_dict(reference.state_dict())
    assert precision.cpu_autocast(wrapped, True) is wrapped
    assert list(wrapped.state_dict()) == list(reference.state_dict())
    inner = _recording_dtypes(wrapped)
    x = torch.randn(2, 4, 32, 32, 32)
    out = wrapped(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the independent computation: autocast around the call
        expected = reference(x)
    assert inner == [torch.bfloat16] and out.dtype == torch.float32 and expected.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=0)
    assert not torch.is_autocast_enabled("cpu")  # left after the call
    # the gradients of one step agree with float32's up to bf16 precision (cosine > 0.99 per weight)
    y = (torch.rand(2, 3, 32, 32, 32) > 0.5).float()
    for net in (reference, wrapped):
        torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
    for a, b in zip(reference.parameters(), wrapped.parameters(), strict=True):
        if a.dim() == 5:
            assert torch.nn.functional.cosine_similarity(a.grad.flatten(), b.grad.flatten(), dim=0) > 0.99


@pytest.mark.parametrize("enabled", [pytest.param(False, id="off_bool"), pytest.param("false", id="off_string")])
def test_cpu_autocast_off_leaves_the_network_in_float32(enabled: object) -> None:
    network = precision.cpu_autocast(torch.nn.Sequential(torch.nn.Conv3d(4, 2, 3)), enabled)
    seen = _recording_dtypes(network)
    assert network(torch.randn(1, 4, 8, 8, 8)).dtype == torch.float32 and seen == [torch.float32]


def test_cpu_autocast_survives_a_deep_copy_and_torch_compile() -> None:
    import copy

    network = precision.cpu_autocast(torch.nn.Sequential(torch.nn.Conv3d(4, 2, 3)), True)
    assert precision.cpu_autocast(network, True) is network and type(network).__mro__[1] is torch.nn.Sequential
    twin = copy.deepcopy(network)
    seen = _recording_dtypes(twin)
    assert twin(torch.randn(1, 4, 8, 8, 8)).dtype == torch.float32 and seen == [torch.bfloat16]
    compiled = torch.compile(network, backend="eager")  # dynamo traces the autocast; no C++ compiler needed
    x = torch.randn(1, 4, 8, 8, 8)
    torch.testing.assert_close(compiled(x), network(x))


def test_cpu_autocast_is_left_when_the_forward_raises() -> None:
    network = precision.cpu_autocast(torch.nn.Conv3d(4, 2, 3), True)
    with pytest.raises(RuntimeError):
        network(torch.randn(1, 3, 8, 8, 8))  # 3 channels for a 4-channel convolution
    assert not torch.is_autocast_enabled("cpu")
    assert network(torch.randn(1, 4, 8, 8, 8)).dtype == torch.float32  # and the next call works

