"""Fixtures of the runs through the CLIs: one tiny model trained once per session (read-only: copy it to change)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TINY_IDS, run_bundle


@pytest.fixture(scope="session")
def trained_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for one epoch on the tiny dataset (2 folds), through the MONAI CLI."""
    run = tmp_path_factory.mktemp("trained") / "run"
    run_bundle("training", {**TINY_IDS, "dataset_dir": tiny_dataset, "run_dir": run, "folds": 2, "epochs": 1,
                            "batch_size": 1})
    return run
