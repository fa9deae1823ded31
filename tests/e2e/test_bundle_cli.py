"""End to end through the MONAI CLI (or the scripts a user runs): bundle cli."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import CONFIGS, REPO
from tests.warm import run_module


def test_metadata_is_valid_against_monais_schema() -> None:
    pytest.importorskip("jsonschema")
    result = run_module(
        [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"),
         "--filepath", str(REPO / "tests" / "resources" / "meta_schema_20240725.json")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr


def test_a_stage_config_given_alone_ends_with_one_line_naming_the_list():
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(CONFIGS / "train.yaml")]
    result = run_module(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: train.yaml is an overlay on common.yaml") and "common.yaml" in last
