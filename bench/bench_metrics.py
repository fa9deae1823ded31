"""Time ``evaluate_case`` on one BraTS-size case: 240 x 240 x 155 voxels, ET/TC/WT, Dice/Sens/Spec/HD95.

Usage::

    python bench/bench_metrics.py [--device cpu|cuda] [--repeats 5] [--spacing 1 1 1]

The prediction and the reference are two overlapping irregular tumours (labels 1 NCR, 2 ED, 4 ET), the
prediction shifted and deformed against the reference. The tensors are made on the chosen device before
the clock starts, so a CUDA run measures the metrics on the GPU, not a host-to-device copy. Prints the
machine, each repeat and the median; the target is at most 2 s per case on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.timing import machine  # noqa: E402
from pipeline.evaluation.regions import evaluate_case  # noqa: E402

SHAPE = (240, 240, 155)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int = 6) -> np.ndarray:
    """Low-frequency noise in [-1, 1] of ``shape``: random values on a coarse grid, trilinearly upsampled."""
    coarse = torch.as_tensor(rng.uniform(-1, 1, size=(1, 1, cells, cells, cells)), dtype=torch.float32)
    return torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0].numpy()


def tumour(shape: tuple[int, int, int], centre: tuple[float, float, float], radius: float, seed: int) -> np.ndarray:
    """An irregular BraTS-like tumour label map ``(H, W, D)`` uint8: ED shell (2), NCR core (1), ET rim (4)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    r = np.sqrt(sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, (1.0, 1.1, 0.8), strict=True)))
    r = r * (1.0 + 0.25 * _smooth_noise(rng, shape))
    lab = np.zeros(shape, dtype=np.uint8)
    lab[r < radius] = 2
    lab[r < 0.6 * radius] = 4
    lab[r < 0.45 * radius] = 1
    lab[(r < 0.6 * radius) & (_smooth_noise(rng, shape, 10) > 0.6)] = 1  # necrosis breaking into the rim
    return lab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0))
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2

    ref_np = tumour(SHAPE, (120.0, 110.0, 80.0), 38.0, seed=0)
    pred_np = tumour(SHAPE, (123.0, 113.0, 78.0), 36.0, seed=1)
    ref = torch.as_tensor(ref_np, device=args.device)
    pred = torch.as_tensor(pred_np, device=args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    print(machine(args.device))
    print(f"case {SHAPE}, spacing {tuple(args.spacing)} mm, device {args.device}; voxels per region (pred/ref):")
    rows = evaluate_case(pred, ref, args.spacing, device=args.device)  # warm-up (and the numbers)
    for row in rows:
        print(
            f"  {row['region']}: dice {row['dice']:.4f} sens {row['sensitivity']:.4f} spec {row['specificity']:.6f} "
            f"hd95 {row['hd95']:.3f} mm  ({row['pred_voxels']}/{row['ref_voxels']})"
        )
    times = []
    for i in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        evaluate_case(pred, ref, args.spacing, device=args.device)
        sync()
        times.append(time.perf_counter() - t0)
        print(f"repeat {i + 1}: {times[-1]:.3f} s")
    med = statistics.median(times)
    print(f"median: {med:.3f} s over {args.repeats} repeats (target <= 2 s) -> {'OK' if med <= 2.0 else 'TOO SLOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
