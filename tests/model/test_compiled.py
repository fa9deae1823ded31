"""torch.compile with a clean fallback: the compiled network computes what the network does, shares its
parameters and its train/eval mode, logs its build time; a compiler that fails leaves the eager network running
with one warning. The configs compile on CUDA only (fast.yaml), never in the demo."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from monai.data import MetaTensor

from pipeline.model.compiled import CompiledNetwork, compiled
from tests.helpers import TINY_NETWORK, parse_bundle


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.InstanceNorm3d(4),
                               torch.nn.Dropout(0.5), torch.nn.Conv3d(4, 1, 1))


def test_compile_off_is_the_network_itself() -> None:
    network = _network()
    assert compiled(network, False) is network and compiled(network, "false") is network


def test_the_compiled_network_computes_the_same_and_shares_its_parameters(caplog: pytest.LogCaptureFixture) -> None:
    network = _network()
    wrapped = compiled(network, "true", backend="eager")  # dynamo's tracing, no C++ compiler needed
    assert isinstance(wrapped, CompiledNetwork)
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in network.parameters()}
    wrapped.eval()
    assert not network.training
    x = MetaTensor(torch.randn(2, 2, 8, 8, 8))  # passed to the compiled graph as a plain tensor
    with caplog.at_level(logging.INFO, logger="pipeline.model.compiled"):
        out = wrapped(x)
    torch.testing.assert_close(out, network(x.as_tensor()))
    assert wrapped.build_seconds is not None and wrapped.failed is None
    assert "built in" in caplog.text
    wrapped.train()
    assert network.training


def test_a_compiler_that_fails_leaves_the_eager_network_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    def broken_backend(graph: torch.fx.GraphModule, example_inputs: list) -> None:
        raise RuntimeError("no C++ compiler on this machine")

    network = _network().eval()
    wrapped = compiled(network, True, backend=broken_backend)
    x = torch.randn(1, 2, 8, 8, 8)
    with caplog.at_level(logging.WARNING, logger="pipeline.model.compiled"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = wrapped(x), wrapped(x)
    torch.testing.assert_close(first, network(x))
    torch.testing.assert_close(second, network(x))
    assert wrapped.failed and "no C++ compiler" in wrapped.failed
    assert caplog.text.count("runs uncompiled") == 1


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="compile_mode"):
        compiled(_network(), True, mode="fastest")


@pytest.mark.parametrize("variants", [{"fast": True}, {"fast": True, "demo": True}, {}], ids=["fast", "demo", "plain"])
def test_the_configs_compile_and_fuse_on_cuda_only(tmp_path, variants: dict) -> None:  # noqa: ANN001
    parser = parse_bundle("training", {"device": "cpu", "data_check": "off", **TINY_NETWORK,
                                       "run_dir": str(tmp_path / "run")}, **variants)
    assert parser.get_parsed_content("compile") is False
    assert not torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))],
                                 fused=parser.get_parsed_content("train#optimizer#fused")).defaults["fused"]
    assert parser.get_parsed_content("train_num_samples") == parser.get_parsed_content("num_samples")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_compiles_and_fuses_on_cuda(tmp_path) -> None:  # noqa: ANN001
    parser = parse_bundle("training", {"device": "cuda", "data_check": "off", **TINY_NETWORK,
                                       "run_dir": str(tmp_path / "run")}, fast=True)
    assert parser.get_parsed_content("compile") is True
    assert parser.get_parsed_content("train#optimizer#fused") is True
    demo = parse_bundle("training", {"device": "cuda", "data_check": "off", **TINY_NETWORK,
                                     "run_dir": str(tmp_path / "demo")}, fast=True, demo=True)
    assert demo.get_parsed_content("compile") is False
