"""End to end through the MONAI CLI (or the scripts a user runs): benchmarks."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.helpers import REPO
from tests.warm import run_module

#: the summary lines, ``name: number ...``, that the README and bench/RESULTS.md quote
FIGURES = ("step_s", "network_step_s", "epoch_h", "fold_epoch_h", "peak_rss_gib", "step_rss_gib",
           "cache_mib_per_case", "val_cache_mib_per_case", "cache_fold_gib", "ram_fold_gib")


def test_tiny_cost_benchmark_prints_positive_figures(tmp_path: Path) -> None:
    result = run_module([sys.executable, "bench/bench_cost.py", "--tiny", "--data-dir", str(tmp_path / "data"),
                             "--threads", "1"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = dict(re.findall(r"^(\w+): ([0-9.]+|n/a)\b", result.stdout, flags=re.MULTILINE))
    for name in FIGURES:
        assert name in figures, f"{name} missing from:\n{result.stdout}"
        assert float(figures[name]) > 0, f"{name}: {figures[name]}"
    assert "cuda_peak_gib" in figures  # n/a without a GPU
    assert "CPU:" in result.stdout and "torch" in result.stdout  # the machine line
    assert "epoch of 1251 cases = 626 steps of 2" in result.stdout  # ceil(1251 / batch_size 2)


def test_training_benchmark_prints_machine_figures_and_ratios(tmp_path: Path) -> None:
    result = run_module([sys.executable, "bench/bench_training.py", "--tiny", "--steps", "3", "--warmup", "1",
                             "--data-dir", str(tmp_path / "data"),
                             "--variant", "fp32:cache_image_dtype=$torch.float32"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "CPU:" in out and "GPU:" in out and "torch 2" in out and "monai 1" in out
    assert "plain:" in out and "ours:" in out and "patches/s" in out
    assert "ratio ours/plain:" in out and "ratio fp32/plain:" in out
    assert out.count("GFLOP per patch forward") == 3 and "TFLOP/s for the training step" in out


def test_inference_benchmark_prints_seconds_per_volume_writing_apart_and_ratio(tmp_path: Path) -> None:
    result = run_module([sys.executable, "bench/bench_inference.py", "--tiny", "--cases", "2", "--data-dir",
                             str(tmp_path / "data")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "CPU:" in out and "monai 1" in out
    assert out.count("s per volume (median of 1 cases") == 3 and "writing the NIfTI" in out  # plain, ours, ours_sync
    assert "writer thread(s)" in out and out.count("end to end, every file written") == 3
    assert "ratio plain/ours:" in out and "background writers:" in out
