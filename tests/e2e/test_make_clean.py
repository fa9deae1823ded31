"""``make clean`` removes what the demo and the tools wrote, never a run the user trained or data synth did not
write (it used to ``rm -rf runs data/synthetic``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("synth_wrote_the_data", [True, False], ids=["synthetic data", "data synth did not write"])
def test_make_clean_keeps_the_users_runs_and_data(tmp_path: Path, synth_wrote_the_data: bool) -> None:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    for folder in ("runs/demo/models", "runs/brats/models", "data/synthetic", ".pytest_cache"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "runs/brats/models/model.pt").write_bytes(b"a trained model")
    (tmp_path / "data/synthetic" / ("synthetic.json" if synth_wrote_the_data else "BraTS2021_00000_t1.nii.gz")
     ).write_text("{}")
    out = subprocess.run(["make", "-s", "clean"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert not (tmp_path / "runs/demo").exists() and not (tmp_path / ".pytest_cache").exists()
    assert (tmp_path / "runs/brats/models/model.pt").read_bytes() == b"a trained model"
    assert "kept your runs in runs/ (brats" in out
    assert (tmp_path / "data/synthetic").exists() != synth_wrote_the_data
