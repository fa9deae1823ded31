"""Segmentations written by background threads are the files the main thread writes: the same labels, the same
probabilities, the same provenance record; the files are fast-compressed uint8 and whole when inference reports."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.bundle import command
from pipeline.core.files import gzip_is_whole
from pipeline.core.provenance import PROVENANCE
from tests.helpers import REPO, TINY_IDS
from tests.warm import run_module


def _infer(data: Path, run: Path, out: Path, threads: int) -> str:
    result = run_module(command("inference", {**TINY_IDS, "dataset_dir": data, "run_dir": run, "output_dir": out,
                                                  "save_probabilities": True, "writer_threads": threads}),
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_background_writers_write_what_the_main_thread_writes(tiny_dataset: Path, trained_run: Path,
                                                              tmp_path: Path) -> None:
    main, background = tmp_path / "main", tmp_path / "background"
    _infer(tiny_dataset, trained_run, main, 0)
    stdout = _infer(tiny_dataset, trained_run, background, 2)
    assert "inference: wrote 4 case(s)" in stdout  # the summary counts the files written by the threads
    segmentations = sorted(p.name for p in main.glob("*.nii.gz"))
    assert len(segmentations) == 4 and segmentations == sorted(p.name for p in background.glob("*.nii.gz"))
    for name in segmentations:
        for sub in ("", "probabilities"):
            a, b = nib.load(main / sub / name), nib.load(background / sub / name)
            assert gzip_is_whole(background / sub / name)
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
            np.testing.assert_array_equal(a.affine, b.affine)
        img = nib.load(background / name)
        assert img.get_data_dtype() == np.uint8
        assert (background / name).read_bytes()[8] == 4  # gzip's XFL byte: compressed at the fastest level
    record, other = (json.loads((folder / PROVENANCE).read_text()) for folder in (main, background))
    written = [e.pop(key) for r in (record, other) for e in r["cases"].values()  # each file's own identity
               for key in ("output", "probabilities_output")]
    assert record == other and all(w["sha256"] and w["size"] > 0 for w in written)
    assert all(entry["probabilities"] == entry["model"] for entry in record["cases"].values())
