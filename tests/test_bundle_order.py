"""pipeline.bundle: the one place that orders the config files, and a stage config alone names the list."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.bundle import CONFIGS, command, config_files
from pipeline.core.errors import UserError
from tests.helpers import REPO
from tests.warm import run_module


def _names(files: list[str]) -> list[str]:
    """The files relative to the configs folder: ``variants/fast.yaml``, ``networks/segresnet.yaml``, ..."""
    return [Path(f).relative_to(CONFIGS).as_posix() for f in files]


@pytest.mark.parametrize(("run_id", "variants", "expected"), [
    pytest.param("training", {}, ["common.yaml", "train.yaml"], id="plain_training"),
    pytest.param("training", {"fast": True, "demo": True},
                 ["common.yaml", "train.yaml", "variants/fast.yaml", "variants/demo.yaml"], id="fast_before_demo"),
    pytest.param("training", {"network": "segresnet", "demo": True, "multi_gpu": True},
                 ["common.yaml", "train.yaml", "networks/segresnet.yaml", "variants/demo.yaml",
                  "variants/multi_gpu_train.yaml"],
                 id="network_then_demo_then_multi_gpu_last"),
    pytest.param("inference", {"fast": True, "network": "dynunet", "ensemble": True},
                 ["common.yaml", "inference.yaml", "variants/fast.yaml", "networks/dynunet.yaml",
                  "variants/ensemble.yaml"],
                 id="ensemble_after_the_network"),
    pytest.param("evaluate", {"fast": True, "demo": True, "network": "segresnet"}, ["common.yaml", "evaluate.yaml"],
                 id="evaluation_reads_files_only"),
])
def test_config_files_come_in_the_one_documented_order(run_id, variants, expected):
    assert _names(config_files(run_id, **variants)) == expected
    assert all(Path(f).is_file() for f in config_files(run_id, **variants))


@pytest.mark.parametrize(("run_id", "variants", "message"), [
    pytest.param("infer", {}, "unknown run id 'infer'", id="unknown_run_id"),
    pytest.param("training", {"ensemble": True}, "inference only", id="ensemble_in_training"),
    pytest.param("inference", {"multi_gpu": True}, "training only", id="multi_gpu_in_inference"),
    pytest.param("training", {"network": "vnet"}, "unknown network 'vnet'", id="unknown_network"),
])
def test_a_combination_that_does_not_apply_is_refused(run_id, variants, message):
    with pytest.raises(UserError, match=message):
        config_files(run_id, **variants)


def test_the_command_line_carries_the_list_and_the_overrides():
    cmd = command("inference", {"run_dir": "runs/x"}, fast=True)
    assert cmd[1:5] == ["-m", "monai.bundle", "run", "inference"]
    assert eval(cmd[cmd.index("--config_file") + 1]) == config_files("inference", fast=True)  # noqa: S307
    assert cmd[-2:] == ["--run_dir", "runs/x"]


def test_the_makefile_prints_the_same_list():
    out = run_module([sys.executable, "-m", "pipeline.bundle", "configs", "training", "--fast", "--network",
                          "segresnet"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert eval(out) == config_files("training", fast=True, network="segresnet")  # noqa: S307


