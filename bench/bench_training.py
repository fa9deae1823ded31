"""Training throughput, plain configuration vs fast.yaml, in one run: patches/s for the whole step.

Usage::

    python bench/bench_training.py [--preset full|budget|demo|tiny] [--tiny] [--device cpu|cuda]
                                   [--steps 20] [--warmup 5] [--repeats 1] [--data-only]
                                   [--set ID=VALUE ...] [--ours-set ID=VALUE ...] [--variant NAME:ID=VALUE ...]

Both configurations are built by MONAI's ``ConfigParser`` from the bundle's own files, as ``monai.bundle run
training`` builds them, and trained on the same synthetic BraTS-layout cases (``pipeline.data.synthetic``):

- plain: ``common.yaml + train.yaml`` with ``amp false``: transforms on the CPU in ``DataLoader`` worker
  processes, float32 (the model zoo's way);
- ours: the same plus ``fast.yaml`` (float16 cache on the training device, patches drawn there without metadata
  or copies through a ``ThreadDataLoader``; on CUDA bf16 AMP and cuDNN autotuning; on a CPU with native bf16
  (AMX, AVX-512 BF16) bf16 autocast, on other CPUs channels-last-3d convolutions).

A step is the whole iteration, data included (:class:`bench.timing.StepTimer`): from one completed iteration
to the next, the GPU synchronised, steps across an epoch end or a loader restart left out. The figure is the
median step after ``--warmup`` steps (pooled over ``--repeats`` runs of each, the order rotated between runs),
as patches/s (``batch_size * num_samples`` patches per step); on CUDA also the GPU memory held before training
(network, cache) and the peak, the network's model FLOPs per patch and the TFLOP/s they make, and how long
``torch.compile`` took to build. ``--data-only`` times the training loaders alone, without the network: how many
patches/s the data side can deliver (the GPU target needs 400). Presets:

- ``full``: 240 x 240 x 155 cases, the UNet of common.yaml (16-256, 2 residual units), 4 patches of 128^3
  per step (``batch_size`` 2 x ``num_samples`` 2; ours on CUDA: as many as the GPU's memory holds, at most 16).
  The targets on one H200: ours >= 400 patches/s and >= 10x plain; with ``--network dynunet`` (nnU-Net's
  32-320 filters) >= 76 patches/s.
- ``budget``: the ``full`` cases and variants/budget.yaml (the budget recipe: 2 mm voxels, 2 patches of 64^3);
  with ``--network dynunet`` what nnU-Net's network costs a step of that recipe.
- ``demo``: 96 x 96 x 64 cases and demo.yaml (what ``make demo`` trains on a CPU).
- ``tiny``: 48 x 48 x 32 cases, 32^3 patches, a UNet of 8-32: seconds on a CPU (the CI smoke test).

Data are written once to ``--data-dir`` (default ``data/bench/<preset>``) and reused.
``--set``/``--ours-set`` override config ids (YAML values) for both / for ours only, e.g.
``--ours-set train#trainer#compile=true`` or ``--set num_samples=4``; ``--variant NAME:ID=VALUE`` adds ours with
an override as a further configuration of the same run (an ablation, e.g.
``--variant 'fp32:cache_image_dtype=$torch.float32'``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import StepTimer, amp_mode, machine, synchronize  # noqa: E402
from pipeline.bundle import NETWORKS  # noqa: E402
from pipeline.model.precision import on_cuda  # noqa: E402

#: preset -> case shape, cases, folds (the validation fold is one of them), variants of both configurations
#: (``pipeline.bundle.config_files``: ``demo=True`` merges demo.yaml, after fast.yaml in ours), config overrides
PRESETS: dict[str, dict] = {
    "full": {"shape": (240, 240, 155), "cases": 10, "folds": 5, "variants": {}, "ids": {}},
    "budget": {"shape": (240, 240, 155), "cases": 10, "folds": 5, "variants": {"budget": True},
               "ids": {"time_budget_min": 0}, "data": "full"},  # steps counted, not the recipe's 45 minutes
    "demo": {"shape": (96, 96, 64), "cases": 10, "folds": 5, "variants": {"demo": True}, "ids": {}},
    "tiny": {"shape": (48, 48, 32), "cases": 5, "folds": 5, "variants": {"demo": True},
             "ids": {"roi_size": [32, 32, 32], "unet_channels": [8, 16, 32], "num_res_units": 1}},
}


def parse_assignment(text: str) -> tuple[str, object]:
    """``"ID=VALUE"`` -> ``(ID, VALUE)``: VALUE read as YAML (``true``, ``4``, ``[64, 64, 64]``), except that a
    reference or an expression (``@id``, ``$expr``) stays a string, as in a config file."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected ID=VALUE, got {text!r}")
    return key, value if value.startswith(("@", "$", "%")) else yaml.safe_load(value)


def parse_variant(text: str) -> tuple[str, tuple[str, object]]:
    """``"NAME:ID=VALUE"`` -> ``(NAME, (ID, VALUE))``, a variant of ours for ``--variant``."""
    name, sep, assignment = text.partition(":")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME:ID=VALUE with NAME a word, got {text!r}")
    return name, parse_assignment(assignment)


def ensure_dataset(root: Path, cases: int, shape: tuple[int, int, int]) -> Path:
    """``cases`` synthetic cases of ``shape`` under ``root``, written unless the last one is already there."""
    from pipeline.data.synthetic import write_dataset

    last = root / f"BraTS2021_{cases - 1:05d}" / f"BraTS2021_{cases - 1:05d}_seg.nii.gz"
    if last.is_file():
        import nibabel as nib

        if tuple(nib.load(last).shape) == tuple(shape):
            return root
    t = time.perf_counter()
    write_dataset(root, cases=cases, shape=shape, seed=0)
    print(f"wrote {cases} synthetic cases of {shape} to {root} in {time.perf_counter() - t:.0f} s", flush=True)
    return root


def build_parser(run_id: str, variants: dict, ids: dict):  # noqa: ANN201 - a monai.bundle.ConfigParser
    """The bundle of ``python -m monai.bundle run <run_id>`` with ``variants`` (``fast=``, ``demo=``, ``network=``:
    :func:`pipeline.bundle.config_files`, the one place that orders the files), then ``ids`` set (``--id value``)."""
    from monai.bundle import ConfigParser

    from pipeline.bundle import config_files

    parser = ConfigParser()
    with warnings.catch_warnings():  # fast.yaml over inference.yaml: its training part has nothing to merge into
        warnings.filterwarnings("ignore", message=r"Can't merge entry \['\+train'\]")
        parser.read_config(config_files(run_id, **variants))
    parser.update(ids)
    return parser


def describe(run_id: str, variants: dict) -> str:
    """The configuration's files after common.yaml, for the reports: ``train.yaml + variants/fast.yaml + ...``."""
    from pipeline.bundle import CONFIGS as BUNDLE_CONFIGS
    from pipeline.bundle import config_files

    return " + ".join(Path(f).relative_to(BUNDLE_CONFIGS).as_posix() for f in config_files(run_id, **variants)[1:])


def apply_process_settings(parser: object, *, training: bool) -> None:
    """The process settings the stages' ``initialize`` makes, for the benchmarks, which skip it: training seeds
    with ``seed`` (``set_determinism``, which also makes cuDNN deterministic), then both stages set cuDNN
    autotuning (the ``cudnn_benchmark`` id). Call it inside :func:`isolated_settings`."""
    from monai.utils import set_determinism

    from pipeline.model.precision import set_cudnn_benchmark

    if training:
        set_determinism(seed=parser.get_parsed_content("seed"))
    set_cudnn_benchmark(parser.get_parsed_content("cudnn_benchmark"))


@contextlib.contextmanager
def isolated_settings() -> Iterator[None]:
    """Restore the process-wide settings a configuration may change (cuDNN autotuning and determinism, set as the
    stages' ``initialize`` sets them), so that a configuration run after another does not inherit them."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def time_loader(loader: object, device: str, count: int) -> tuple[StepTimer, tuple[int, ...]]:
    """Time ``count`` batches of ``loader`` alone (no network), the first batch of each pass not counted.

    Returns the timer and the shape of one patch.
    """
    timer = StepTimer(device)
    while len(timer.steps) < count:
        last = None
        for batch in loader:
            shape = tuple(batch["image"].shape[1:])
            synchronize(device)  # transforms on the GPU run asynchronously
            now = time.perf_counter()
            if last is not None:
                timer.steps.append(now - last)
                timer.data.append(now - last)
                timer.items.append(len(batch["image"]))
                if len(timer.steps) >= count:
                    break
            last = now
    return timer, shape


def run_config(name: str, variants: dict, ids: dict, *, device: str, steps: int, warmup: int,
               data_only: bool = False) -> dict:
    """Build the trainer of ``variants`` with ``ids``, train ``warmup + steps`` timed steps, return the figures.

    ``data_only``: draw the batches from the trainer's loader without training (the loader's own rate).
    """
    parser = build_parser("training", variants, ids)
    apply_process_settings(parser, training=True)
    batch, samples = (int(parser.get_parsed_content(k)) for k in ("batch_size", "train_num_samples"))
    train_cases = len(parser.get_parsed_content("split")[0])
    per_pass = -(-train_cases // batch)
    if per_pass < 2:
        raise SystemExit(f"{name}: {train_cases} training case(s) make {per_pass} step per pass; need 2 or more")
    # one epoch of enough iterations; each pass over the loader loses one step (its first) to the restart
    needed = warmup + steps
    parser["train#trainer#epoch_length"] = needed + -(-needed // (per_pass - 1)) + 1
    if on_cuda(device):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if on_cuda(device) else 0
    t = time.perf_counter()
    trainer = parser.get_parsed_content("train#trainer")  # builds the network, the caches, the loaders
    built = time.perf_counter() - t
    resident = (torch.cuda.memory_allocated() - base) if on_cuda(device) else 0
    if on_cuda(device):
        torch.cuda.reset_peak_memory_stats()
    if data_only:
        timer, patch = time_loader(trainer.data_loader, device, warmup + steps)
    else:
        timer = StepTimer(device, batch_size=lambda engine: len(engine.state.batch))  # decollated: one item a patch
        timer.attach(trainer)
        trainer.run()
        patch = tuple(trainer.state.batch[0]["image"].shape)
    compiled = getattr(trainer.network, "build_seconds", None), getattr(trainer.network, "failed", None)
    out = dict(name=name, timer=timer.drop(warmup), built_s=built, patch=patch, compiled=compiled,
               gflop=forward_gflop(parser),
               patches_per_step=batch * samples, amp=amp_mode(parser, bool(trainer.amp)),
               loader=type(trainer.data_loader).__name__,
               resident_gib=resident / 2**30,
               peak_gib=(torch.cuda.max_memory_allocated() - base) / 2**30 if on_cuda(device) else None)
    del trainer, parser
    gc.collect()
    if on_cuda(device):
        torch.cuda.empty_cache()
    return out


def forward_gflop(parser: object) -> float:
    """Model GFLOP of one patch's forward pass (a multiply-add counts 2) of the configuration's network and
    ``roi_size``, counted by ``torch.utils.flop_counter`` on the meta device (nothing computed). A training step is
    about three times this per patch (the backward pass twice the forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    factory, roi = parser.get_parsed_content("network_factory"), parser.get_parsed_content("roi_size")
    channels = len(parser.get_parsed_content("channels"))
    with torch.device("meta"):
        network, x = factory(), torch.zeros(1, channels, *[int(s) for s in roi])
    with FlopCounterMode(display=False) as counter:
        network(x)
    return counter.get_total_flops() / 1e9


def combine(runs: list[dict], data_only: bool = False) -> dict:
    """One configuration's figures over its repeats: steps pooled, the slowest build, the highest memory.

    Training: patches/s at the median step. Loaders alone (``data_only``): patches over seconds, because worker
    processes deliver in bursts (prefetched batches, then a wait), which makes a median step meaningless.
    """
    timer = runs[0]["timer"]
    for run in runs[1:]:
        timer.extend(run["timer"])
    out = {**runs[0], **timer.summary(), "repeats": len(runs), "built_s": max(r["built_s"] for r in runs)}
    if data_only:
        out["items_per_s"] = out["mean_items_per_s"]
    if runs[0]["peak_gib"] is not None:
        out["peak_gib"] = max(r["peak_gib"] for r in runs)
        out["resident_gib"] = max(r["resident_gib"] for r in runs)
    return out


def report(r: dict, data_only: bool = False) -> str:
    what = "(loader alone, on average), median batch" if data_only else " median step"
    line = (f"{r['name']:>5}: {r['items_per_s']:8.2f} patches/s {what} {r['step_s'] * 1000:8.1f} ms "
            f"(min {r['min_s'] * 1000:.1f}, max {r['max_s'] * 1000:.1f}; waiting for data {r['data_s'] * 1000:.1f} ms) "
            f"over {r['steps']} steps ({r['repeats']} run(s)) of {r['items_per_step']:.0f} x {r['patch']}; "
            f"{r['loader']}, amp {r['amp']}; caches and loaders built in {r['built_s']:.1f} s")
    if not data_only:
        line += (f"\n       model compute: {r['gflop']:.1f} GFLOP per patch forward, "
                 f"{3 * r['gflop'] * r['items_per_s'] / 1000:.2f} TFLOP/s for the training step (3x forward)")
    build, failed = r["compiled"]
    if build is not None or failed:
        line += f"; torch.compile: {'failed (' + failed + ')' if failed else f'built in {build:.1f} s'}"
    if r["peak_gib"] is not None:
        line += (f"; GPU memory: {r['resident_gib']:.2f} GiB before training (network, cache), "
                 f"peak {r['peak_gib']:.2f} GiB")
    return line


def argument_parser(description: str, presets: Iterable[str] = PRESETS) -> argparse.ArgumentParser:
    """The options both benchmarks take: preset (of ``presets``), device, repeats, data folder, configurations, id
    overrides."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--preset", choices=sorted(presets), default="full")
    ap.add_argument("--tiny", action="store_true", help="same as --preset tiny")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each configuration, alternating the order")
    ap.add_argument("--data-dir", type=Path, help="synthetic cases (default data/bench/<preset>)")
    ap.add_argument("--configs", nargs="+", choices=["plain", "ours"], default=["plain", "ours"])
    ap.add_argument("--network", choices=list(NETWORKS), default="unet",
                    help="the network overlay of both configurations (dynunet: the nnU-Net-class DynUNet)")
    ap.add_argument("--set", dest="both", type=parse_assignment, action="append", default=[], metavar="ID=VALUE")
    ap.add_argument("--ours-set", dest="ours", type=parse_assignment, action="append", default=[],
                    metavar="ID=VALUE")
    return ap


def prepare(args: argparse.Namespace) -> tuple[str, dict, Path]:
    """After parsing: the preset's name and settings and its data folder (written once); prints the machine.

    Raises:
        SystemExit: ``--device cuda`` without a CUDA device (exit status 2).
    """
    preset_name = "tiny" if args.tiny else args.preset
    preset = PRESETS[preset_name]
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        raise SystemExit(2)
    print(machine(args.device))
    folder = REPO / "data" / "bench" / preset.get("data", preset_name)  # a preset may share another's cases
    data = ensure_dataset(args.data_dir or folder, preset["cases"], preset["shape"])
    return preset_name, preset, data


def main(argv: list[str] | None = None) -> int:
    ap = argument_parser(__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    ap.add_argument("--warmup", type=int, default=5, help="steps not counted (cuDNN autotuning, allocator)")
    ap.add_argument("--data-only", action="store_true",
                    help="time the training loaders alone, without the network: batches/s the data side can feed")
    ap.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="NAME:ID=VALUE",
                    help="also run ours with ID=VALUE under NAME, in the same rotation (an ablation); repeatable")
    args = ap.parse_args(argv)
    preset_name, preset, data = prepare(args)
    work = Path(tempfile.mkdtemp(prefix="bench_training_"))
    common = {"dataset_dir": str(data), "folds": preset["folds"], "fold": 0, "data_check": "off",
              "device": args.device, "epochs": 1, "val_interval": 10**6, "warmup_epochs": 0, "seed": 0,
              **preset["ids"], **dict(args.both)}
    variants = {**preset["variants"], "network": args.network}
    ours = ({"fast": True, **variants}, {**common, **dict(args.ours)})
    configs = {"plain": (variants, {**common, "amp": False}), "ours": ours}
    configs = {name: configs[name] for name in args.configs}
    for name, (key, value) in args.variant:
        variants, ids = configs.get(name, ours)
        configs[name] = (variants, {**ids, key: value})
    print(f"preset {preset_name}: {preset['cases']} cases of {preset['shape']} in {data}; network {args.network}")
    for name, (variants, ids) in configs.items():
        extra = {k: v for k, v in ids.items() if common.get(k, object()) != v}
        print(f"  {name} = common + {describe('training', variants)}" + (f", {extra}" if extra else ""))
    names = list(configs)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    try:
        for r in range(args.repeats):  # rotate the order, so that no configuration always runs first
            for name in names[r % len(names):] + names[: r % len(names)]:
                variants, ids = configs[name]
                with isolated_settings():
                    runs[name].append(run_config(name, variants, {**ids, "run_dir": str(work / f"{name}_{r}")},
                                                 device=args.device, steps=args.steps, warmup=args.warmup,
                                                 data_only=args.data_only))
                rate = combine(runs[name][-1:], args.data_only)["items_per_s"]
                print(f"  run {r + 1}/{args.repeats} {name}: {rate:.2f} patches/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {name: combine(rs, args.data_only) for name, rs in runs.items()}
    for name in names:
        print(report(results[name], args.data_only), flush=True)
    alone = " (loaders alone)" if args.data_only else ""
    for base in ("plain", "ours"):  # every configuration against plain; the variants also against ours
        others = [n for n in names if n != base and (base == "plain" or n != "plain")]
        for name in others if base in results else []:
            ratio = results[name]["items_per_s"] / results[base]["items_per_s"]
            print(f"ratio {name}/{base}: {ratio:.2f}x patches/s{alone}")
    if args.device == "cuda" and preset_name == "full" and "ours" in results and not args.data_only:
        ours_rate = results["ours"]["items_per_s"]
        versus = f", {ours_rate / results['plain']['items_per_s']:.1f}x plain" if "plain" in results else ""
        target = "ours >= 400 patches/s and >= 10x plain" if args.network == "unet" else "ours >= 76 patches/s"
        print(f"target (one H200): {target}: {ours_rate:.0f} patches/s{versus}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
