"""``--overwrite`` replaces an evaluation or a comparison only with a new one: a new one refused while scoring (a
label outside the scheme) leaves the old one whole (its files were deleted before the scoring began)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.core.files import replaced_on_success
from tests.helpers import checksums, corrupted_predictions


def _with_a_foreign_label(predictions: Path) -> Path:
    """One prediction holds label 7, outside the BraTS scheme: its scoring is refused."""
    first = sorted(predictions.glob("*.nii.gz"))[0]
    img = nib.load(first)
    arr = np.asarray(img.dataobj).copy()
    arr[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), first)
    return predictions


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_an_overwrite_refused_while_scoring_keeps_the_old_result(tiny_dataset: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture, command: str) -> None:
    good = [corrupted_predictions(tiny_dataset, tmp_path / f"good{e}", e) for e in (0, 1)]
    bad = _with_a_foreign_label(corrupted_predictions(tiny_dataset, tmp_path / "bad", 2))
    out = tmp_path / "out"

    def run(*folders: Path, overwrite: bool = False) -> int:
        argv = (["evaluate", str(folders[0]), str(tiny_dataset), "--out", str(out), "--no-pictures"]
                if command == "evaluate" else ["compare", str(tiny_dataset), *map(str, folders), "--out", str(out)])
        return pipeline_main(argv + (["--overwrite"] if overwrite else []))

    assert run(*good) == 0
    before = checksums(out)
    capsys.readouterr()
    assert run(bad, good[1], overwrite=True) == 2
    assert "7" in capsys.readouterr().err.strip().splitlines()[-1]
    after = checksums(out)
    assert {k: v for k, v in after.items() if k in before} == before  # every file of the old result, unchanged


def test_files_of_the_old_result_the_new_one_did_not_write_go_when_it_succeeds(tmp_path: Path) -> None:
    from pipeline.core.files import atomic_write_text

    rewritten, stale, absent = tmp_path / "metrics.csv", tmp_path / "official.csv", tmp_path / "report.html"
    rewritten.write_text("old")
    stale.write_text("old")
    with replaced_on_success([rewritten, stale, absent]):
        atomic_write_text(rewritten, "new")
    assert rewritten.read_text() == "new" and not stale.exists() and not absent.exists()
    stale.write_text("old")
    with pytest.raises(RuntimeError), replaced_on_success([stale]):
        raise RuntimeError("scoring refused")
    assert stale.read_text() == "old"
