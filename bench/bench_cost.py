"""What real training costs: memory and time of a training step at BraTS size, an epoch of BraTS 2021, the cache.

Usage::

    python bench/bench_cost.py [--tiny] [--fast] [--device cpu|cuda] [--steps 4] [--warmup 1]
                               [--cases 1251] [--folds 5] [--data-dir DIR] [--threads N]

The pieces are built by MONAI's ``ConfigParser`` from the bundle's own files, as ``monai.bundle run training``
builds them: ``common.yaml + train.yaml`` (what ``make train`` and the README's training command run; ``--fast``
adds ``fast.yaml``): the network of common.yaml (UNet 16-256, 2 residual units), 128^3 patches, ``batch_size`` 2
x ``num_samples`` 2 = 4 patches a step, Dice loss on sigmoids, AdamW. Data: 2 synthetic cases of 240 x 240 x 155
voxels, 4 contrasts (``pipeline.data.synthetic``, written once to ``--data-dir``, default ``data/bench/cost_full``).

Measured, in one process:

- the cache: each case through train.yaml's ``preprocessing`` (load, channels, regions, orientation, crop to the
  brain, pad, crop centres, normalisation; with ``--fast`` fast.yaml's float16 / uint8 conversion), the bytes of
  every array of the cached item, per case; extrapolated to the training and validation cases of fold 0 of
  ``--folds`` of ``--cases`` cases (BraTS 2021: 1,251), ``cache_rate`` 1.0 (train.yaml's default);
- a training step, ``--warmup`` steps then ``--steps`` timed: the random transforms on the cached cases (patch
  crop by tumour/background centres, flips, intensity), collation, forward, loss, backward, optimiser step. The
  whole step and its network part (forward to optimiser, the GPU synchronised) are printed as medians;
  ``make train`` draws the patches in 2 DataLoader workers, so an epoch lies between the network part (data
  fully overlapped) and the whole step (no overlap) times ``ceil(cases / batch_size)`` steps;
- memory: the host's resident set (``/proc/self/status``: VmRSS before the first step, VmHWM, the peak, reset
  before the steps through ``/proc/self/clear_refs``, else ``ru_maxrss``, the whole process's peak) and, on CUDA,
  ``torch.cuda.max_memory_allocated`` during the steps.

The last lines are ``name: number ...``, one figure each (``tests/test_bench_cost.py`` reads them). ``--tiny``:
64^3 cases, 32^3 patches, UNet 8-32 with 1 residual unit, 3 steps: seconds on a CPU (the CI smoke test).
Validation is not included in the epoch time.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_training import apply_process_settings, build_parser, describe, ensure_dataset  # noqa: E402
from bench.timing import machine, synchronize  # noqa: E402
from pipeline.model.precision import on_cuda  # noqa: E402

BRATS2021_CASES = 1251

#: preset -> case shape and config ids (``full``: the defaults of common.yaml and train.yaml)
PRESETS: dict[str, dict] = {
    "full": {"shape": (240, 240, 155), "steps": 4, "ids": {}},
    "tiny": {"shape": (64, 64, 64), "steps": 3,
             "ids": {"roi_size": [32, 32, 32], "unet_channels": [8, 16, 32], "num_res_units": 1}},
}


def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (Linux), or {} where /proc is not there."""
    try:
        with open("/proc/self/status") as f:
            lines = [line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM"))]
    except OSError:
        return {}
    return {key: int(value.split()[0]) * 1024 for key, value in lines}


def rss_bytes() -> int:
    """The resident set of this process now, in bytes (0 where unknown)."""
    return _proc_status().get("VmRSS", 0)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (``/proc/self/clear_refs``); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The peak resident set of this process since the last :func:`reset_peak_rss` (or its start), in bytes."""
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def array_bytes(item: dict) -> dict[str, tuple[int, str, tuple[int, ...]]]:
    """``{key: (bytes, dtype, shape)}`` of the arrays and tensors of one cached item (metadata apart)."""
    out = {}
    for key, value in item.items():
        if isinstance(value, torch.Tensor):
            out[key] = (value.element_size() * value.nelement(), str(value.dtype).removeprefix("torch."),
                        tuple(value.shape))
        elif isinstance(value, np.ndarray):
            out[key] = (value.nbytes, str(value.dtype), value.shape)
    return out


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} (median of {len(xs)} steps; min {min(xs):.3f}, max {max(xs):.3f})"


def build(preset: dict, data: Path, work: Path, device: str, fast: bool):  # noqa: ANN201 - a ConfigParser
    ids = {"dataset_dir": str(data), "data_check": "off", "device": device, "run_dir": str(work / "run"),
           "num_workers": 0, "seed": 0, **preset["ids"]}
    return describe("training", {"fast": fast}), build_parser("training", {"fast": fast}, ids)


def cache_cases(parser, items: list[dict], fast: bool) -> tuple[list[dict], list[float], list[dict]]:  # noqa: ANN001
    """The cached items (as ``CacheDataset`` holds them), the seconds to preprocess each, and the plain
    preprocessed items' array sizes (before fast.yaml's conversion: what validation caches)."""
    from monai.transforms import Compose

    preprocessing = Compose(parser.get_parsed_content("preprocessing"))
    conversion = Compose(parser.get_parsed_content("cache_conversion")) if fast else None
    cached, seconds, plain_sizes = [], [], []
    for item in items:
        t = time.perf_counter()
        out = preprocessing(item)
        seconds.append(time.perf_counter() - t)
        plain_sizes.append(array_bytes(out))
        cached.append(conversion(out) if conversion is not None else out)
    return cached, seconds, plain_sizes


def train_steps(parser, cached: list[dict], device: str, steps: int, warmup: int,  # noqa: ANN001
                fast: bool = False) -> dict:
    """Run ``warmup + steps`` training steps on batches drawn from ``cached``; the timings and memory peaks.

    As the trainer's loader: plain, a deep copy of the cached item per draw and MONAI metadata tracked; with
    ``fast`` (fast.yaml) neither (``pipeline.training.fast.without_cache_copy``, ``without_metadata``).
    """
    from monai.data import list_data_collate
    from monai.transforms import Compose

    from pipeline.training.fast import without_metadata

    batch_size = int(parser.get_parsed_content("batch_size"))
    transforms = parser.get_parsed_content("random_transforms")
    random = without_metadata(transforms) if fast else Compose(transforms)
    draw = (lambda item: item) if fast else copy.deepcopy
    network = parser.get_parsed_content("network")
    loss_function = parser.get_parsed_content("train#loss_function")  # what the trainer minimises
    optimizer = parser.get_parsed_content("train#optimizer")
    if {id(p) for group in optimizer.param_groups for p in group["params"]} != {id(p) for p in network.parameters()}:
        raise RuntimeError("train#optimizer does not hold the parameters of `network`")
    amp = parser.get_parsed_content("amp_enabled") and on_cuda(device)
    amp_kwargs = parser.get_parsed_content("amp_kwargs")  # the engines' autocast dtype
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    network.train()
    rng = np.random.default_rng(0)
    out = {"step": [], "network": [], "patches": 0, "patch": None, "rss_before": rss_bytes(), "peak_reset": False}
    if on_cuda(device):
        torch.cuda.reset_peak_memory_stats()
        out["cuda_before"] = torch.cuda.memory_allocated()
    out["peak_reset"] = reset_peak_rss()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        chosen = rng.choice(len(cached), size=batch_size, replace=len(cached) < batch_size)
        samples = [random(draw(cached[j])) for j in chosen]  # plain CacheDataset copies the cached item
        batch = list_data_collate(samples)  # batch_size x num_samples patches, as the trainer's DataLoader
        images, labels = batch["image"].to(device), batch["label"].to(device)
        synchronize(device)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", enabled=amp, **amp_kwargs) if on_cuda(device) else contextlib.nullcontext():
            loss = loss_function(network(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        synchronize(device)
        t2 = time.perf_counter()
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"step {i}: loss {value}")
        if i >= warmup:
            out["step"].append(t2 - t0)
            out["network"].append(t2 - t1)
        out["patches"], out["patch"] = len(images), tuple(images.shape[1:])
        print(f"  step {i + 1}/{warmup + steps}{' (warm-up)' if i < warmup else ''}: {t2 - t0:.3f} s "
              f"(network {t2 - t1:.3f} s), loss {value:.4f}", flush=True)
    out["peak_rss"] = peak_rss_bytes()
    out["cuda_peak"] = torch.cuda.max_memory_allocated() if on_cuda(device) else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="64^3 cases, 32^3 patches, UNet 8-32 (the CI smoke test)")
    ap.add_argument("--fast", action="store_true", help="add fast.yaml (float16 cache; bf16 where supported)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, help="timed steps (default 4; --tiny 3)")
    ap.add_argument("--warmup", type=int, default=1, help="steps not counted (allocator, oneDNN/cuDNN set-up)")
    ap.add_argument("--cases", type=int, default=BRATS2021_CASES, help="cases of the epoch (BraTS 2021: 1251)")
    ap.add_argument("--folds", type=int, default=5, help="folds: one validates, the others train")
    ap.add_argument("--data-dir", type=Path, help="synthetic cases (default data/bench/cost_<preset>)")
    ap.add_argument("--threads", type=int, help="torch threads (default torch's: the cores); 1 on a CPU that "
                    "another job keeps busy, where 2 threads wait for each other")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    name = "tiny" if args.tiny else "full"
    preset = PRESETS[name]
    steps = args.steps or preset["steps"]
    print(machine(args.device))
    data = ensure_dataset(args.data_dir or REPO / "data" / "bench" / f"cost_{name}", 2, preset["shape"])
    work = Path(tempfile.mkdtemp(prefix="bench_cost_"))
    try:
        from pipeline.data.layouts import discover_cases

        overlays, parser = build(preset, data, work, args.device, args.fast)
        apply_process_settings(parser, training=True)  # one configuration per process: nothing to restore
        batch_size, num_samples = (int(parser.get_parsed_content(k)) for k in ("batch_size", "num_samples"))
        roi, channels = parser.get_parsed_content("roi_size"), parser.get_parsed_content("unet_channels")
        print(f"configuration: common.yaml + {overlays}; UNet {channels}, "
              f"{parser.get_parsed_content('num_res_units')} residual unit(s), patch {roi}, batch_size {batch_size} "
              f"x num_samples {num_samples} = {batch_size * num_samples} patches a step; "
              f"data: 2 synthetic cases of {preset['shape']} in {data}", flush=True)
        items = [case.to_item() for case in discover_cases(data)[:2]]
        cached, prep_s, plain_sizes = cache_cases(parser, items, args.fast)
        sizes = [array_bytes(c) for c in cached]
        for key, (nbytes, dtype, shape) in sizes[0].items():
            print(f"  cached {key}: {dtype} {shape}, {nbytes / 2**20:.1f} MiB (first case)")
        cache_case = statistics.mean(sum(b for b, _, _ in s.values()) for s in sizes)
        # validation caches image and regions, float32 and bool, without crop centres (train.yaml's validate)
        val_case = statistics.mean(s["image"][0] + s["label"][0] for s in plain_sizes)
        val_cases = args.cases // args.folds
        train_cases = args.cases - val_cases
        cache_gib = (cache_case * train_cases + val_case * val_cases) / 2**30

        run = train_steps(parser, cached, args.device, steps, args.warmup, args.fast)
        step, net = statistics.median(run["step"]), statistics.median(run["network"])
        per_epoch = math.ceil(args.cases / batch_size)
        per_fold_epoch = math.ceil(train_cases / batch_size)
        epochs = int(parser.get_parsed_content("epochs"))
        held = sum(sum(b for b, _, _ in s.values()) for s in sizes)
        peak, before = run["peak_rss"], run["rss_before"]
        # the process at its peak, with the 2 measured cases' cache replaced by fold 0's whole training cache
        ram_fold = (peak - held) / 2**30 + cache_gib
        print(f"patches: {run['patches']} of {run['patch']} a step; preprocessing (filling the cache) "
              f"{statistics.median(prep_s):.2f} s per case, one process")
        print(f"epoch of {args.cases} cases = {per_epoch} steps of {batch_size}; fold 0 of {args.folds} trains on "
              f"{train_cases} cases = {per_fold_epoch} steps; train.yaml's {epochs} epochs of those: "
              f"{per_fold_epoch * epochs * net / 86400:.1f}-{per_fold_epoch * epochs * step / 86400:.1f} days "
              "(network part - whole step; validation not included)")
        print(f"memory: RSS {before / 2**30:.2f} GiB before the first step (libraries, network, the 2 cached cases: "
              f"{held / 2**30:.2f} GiB), peak {peak / 2**30:.2f} GiB during the steps"
              + ("" if run["peak_reset"] else " (process peak: the peak mark could not be reset)"))
        print(f"cache of fold 0 (cache_rate 1.0): {train_cases} training cases x {cache_case / 2**20:.0f} MiB + "
              f"{val_cases} validation cases x {val_case / 2**20:.0f} MiB = {cache_gib:.1f} GiB; the training "
              f"process then needs about {ram_fold:.1f} GiB of RAM (peak - 2 cases + that cache; DataLoader "
              "workers apart)")
        print(f"step_s: {_median(run['step'])}")
        print(f"network_step_s: {_median(run['network'])}")
        print(f"epoch_h: {per_epoch * step / 3600:.3f} ({args.cases} cases, {per_epoch} whole steps; "
              f"{per_epoch * net / 3600:.3f} h with the data fully overlapped)")
        print(f"fold_epoch_h: {per_fold_epoch * step / 3600:.3f} ({train_cases} training cases, {per_fold_epoch} steps;"
              f" {per_fold_epoch * net / 3600:.3f} h with the data fully overlapped)")
        print(f"peak_rss_gib: {peak / 2**30:.3f} (host, during the training steps)")
        print(f"step_rss_gib: {max(peak - before, 0) / 2**30:.3f} (peak above the RSS before the first step: "
              "activations, gradients, optimiser state, the batch)")
        if run["cuda_peak"] is not None:
            print(f"cuda_peak_gib: {run['cuda_peak'] / 2**30:.3f} (torch.cuda.max_memory_allocated during the "
                  f"steps; {run['cuda_before'] / 2**30:.3f} GiB allocated before)")
        else:
            print("cuda_peak_gib: n/a (no GPU used)")
        print(f"cache_mib_per_case: {cache_case / 2**20:.1f} (training: "
              + ", ".join(f"{k} {d}" for k, (_, d, _) in sizes[0].items()) + ")")
        print(f"val_cache_mib_per_case: {val_case / 2**20:.1f} (validation: image float32, regions bool)")
        print(f"cache_fold_gib: {cache_gib:.2f}")
        print(f"ram_fold_gib: {ram_fold:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
