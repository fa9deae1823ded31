"""MONAI's bundle tooling works on this bundle: verify_net_in_out, TorchScript and ONNX export (dynamic batch and
spatial axes) match eager."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.bundle import config_files, config_list
from tests.helpers import REPO, parse_bundle
from tests.warm import run_module

#: (variants of pipeline.bundle, smallest patch whose bottleneck keeps > 1 voxel for instance norm)
NETWORK_OVERLAYS = [pytest.param({}, 32, id="unet"), pytest.param({"demo": True}, 32, id="demo_unet"),
                    pytest.param({"network": "segresnet"}, 32, id="segresnet"),
                    pytest.param({"network": "dynunet"}, 64, id="dynunet_five_downsamplings")]


def _files(**variants: object) -> str:
    """The inference bundle's ``--config_file`` list with ``variants`` (``demo=True``, ``network=...``)."""
    return config_list(config_files("inference", **variants))


def _bundle(*args: str) -> subprocess.CompletedProcess:
    result = run_module([sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _network(**variants: object) -> torch.nn.Module:
    """The network the training bundle with ``variants`` builds (its config's, no run record)."""
    return parse_bundle("training", **variants).get_parsed_content("network_def")


@pytest.mark.parametrize(("variants", "size"), NETWORK_OVERLAYS)
def test_each_network_overlay_maps_four_contrasts_to_three_regions(variants: dict, size: int) -> None:
    net = _network(**variants).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, size, size, size))
    assert tuple(out.shape) == (1, 3, size, size, size)


@pytest.mark.parametrize(("variants", "size"), NETWORK_OVERLAYS)
def test_the_training_loss_reaches_every_parameter_of_each_network_overlay(variants: dict, size: int) -> None:
    """What the trainer minimises (train#loss_function) takes the network's training-mode output, DynUNet's
    deep-supervision heads included, and every parameter gets a gradient (a head left out of the loss would not)."""
    torch.manual_seed(0)
    dynunet = variants.get("network") == "dynunet"
    parser = parse_bundle("training", {"network_factory#filters": [8] * 6} if dynunet else None, **variants)  # fast
    net = parser.get_parsed_content("network_def").train()
    target = (torch.rand(1, 3, size, size, size) > 0.7).float()
    out = net(torch.randn(1, 4, size, size, size))
    if dynunet:
        assert tuple(out.shape) == (1, 4, 3, size, size, size)  # the output and three coarser heads
    parser.get_parsed_content("train#loss_function")(out, target).backward()
    assert [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []


@pytest.mark.parametrize(("overrides", "outputs"), [
    pytest.param({}, 4, id="default_output_and_three_heads"),
    pytest.param({"deep_supervision": "false"}, 1, id="cli_false_turns_it_off"),  # as --deep_supervision false
    pytest.param({"dynunet_strides": [[1, 1, 1]] + [[2, 2, 2]] * 3}, 2, id="three_downsamplings_one_head")])
def test_dynunet_deep_supervision_follows_its_ids(overrides: dict, outputs: int) -> None:
    parser = parse_bundle("training", overrides, network="dynunet")
    parser["network_factory"]["filters"] = [4] * len(parser.get_parsed_content("dynunet_strides"))  # tiny
    with torch.no_grad():
        out = parser.get_parsed_content("network_def").train()(torch.randn(1, 4, 64, 64, 64))
    assert tuple(out.shape) == ((1, outputs, 3, 64, 64, 64) if outputs > 1 else (1, 3, 64, 64, 64))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(_network(demo=True).state_dict(), path)
    return path


#: converter_kwargs of ``onnx_export`` (README, "Shipping a model"): named input and output, batch and the three
#: spatial axes dynamic (torch's dynamo exporter turns ``dynamic_axes`` into dynamic shapes)
DYNAMIC_AXES = {0: "batch", 2: "h", 3: "w", 4: "d"}
ONNX_CONVERTER_KWARGS = {"input_names": ["image"], "output_names": ["pred"],
                         "dynamic_axes": {"image": DYNAMIC_AXES, "pred": DYNAMIC_AXES}}




#: Each make target that reads or scores DATASET, and how its command names the scheme LABEL_SCHEME= gives.
SCHEME_FLAGS = {"datalist": "--label_scheme ped", "train": "--label_scheme ped", "infer": "--set label_scheme ped",
                "evaluate": "--scheme ped", "cv": "--label_scheme ped", "infer-ensemble": "--label_scheme ped"}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", list(SCHEME_FLAGS))
def test_make_targets_pass_the_scheme_given_and_none_without(target: str) -> None:
    """BraTS-PED data needs its numbering named on every command (``auto`` is refused): ``LABEL_SCHEME=ped`` reaches
    each target's command in that command's own spelling; without it, no target names one (auto), the config lists
    and flags ``make -n`` computes through ``$(shell $(PY) ...)`` included. With the scheme, ``PY=echo``: those come
    back as their own command lines (the scheme is the Makefile's to pass), without two more Python start-ups."""
    def dry(*extra: str, py: str = sys.executable) -> str:
        return subprocess.run(["make", "-n", target, f"PY={py}",
                               "DATASET=data/PED", "FOLDS=0", *extra], cwd=REPO, capture_output=True, text=True,
                              check=True, env={**{k: v for k, v in os.environ.items() if k != "LABEL_SCHEME"},
                                                 "PYTHONPATH": str(REPO)}).stdout
    assert SCHEME_FLAGS[target] in dry("LABEL_SCHEME=ped", py="echo")
    assert "scheme" not in dry()
