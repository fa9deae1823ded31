"""Inference time per BraTS-size volume, plain configuration vs fast.yaml, in one run; NIfTI writing apart.

Usage::

    python bench/bench_inference.py [--preset full|demo|tiny] [--tiny] [--device cpu|cuda] [--cases 6]
                                    [--repeats 1] [--set ID=VALUE ...] [--ours-set ID=VALUE ...]

Both configurations are built by MONAI's ``ConfigParser`` from the bundle's files, as ``monai.bundle run
inference`` builds them, and segment the same synthetic cases (``pipeline.data.synthetic``) with the same weights
(the network of common.yaml, randomly initialised with seed 0 and saved as the checkpoint):

- plain: ``common.yaml + inference.yaml`` with ``amp false`` (float32, 2 DataLoader workers, 4 windows a pass,
  each segmentation written in the main thread: ``writer_threads 0``);
- ours: the same plus ``fast.yaml`` (bf16 AMP and cuDNN autotuning on CUDA, 8 windows a pass, more workers;
  bf16 autocast on a CPU with native bf16), segmentations written by background threads (``writer_threads
  auto``) while the next case runs;
- ours_sync: ours writing in the main thread, to measure what the background writers save (``--no-sync``: not).

``full`` (the default) segments 240 x 240 x 155 cases of 4 contrasts with a 128^3 sliding window, overlap 0.5,
Gaussian blending. A volume's time runs from one finished case to the next: loading and preprocessing (in the
loader's workers, overlapped), the sliding window, and the post-processing (sigmoid, inverting the crop and
orientation, threshold, label conversion), less the writing of the NIfTI file, which is reported on its own
(it depends on the disk and, through gzip, on the segmentation: random weights segment noise, which compresses
worse than a real tumour). The first case is not counted (start-up, cuDNN autotuning). The post-processing is
broken down by transform. "End to end" runs from the first finished case to the last file written, per case:
what the user waits for. The target on one H200: <= 0.1 s per case end to end. ``demo`` and ``tiny`` as in
``bench_training.py``; data are shared with it (``data/bench/<preset>``).
"""

from __future__ import annotations

import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_training import (  # noqa: E402
    PRESETS,
    apply_process_settings,
    argument_parser,
    build_parser,
    describe,
    isolated_settings,
    prepare,
)
from bench.timing import StepTimer, TimedTransform, amp_mode  # noqa: E402
from pipeline.model.precision import on_cuda  # noqa: E402

#: cases segmented per configuration, by preset (the first is the warm-up)
#: Volumes per preset (bench_training's presets but ``budget``: a random checkpoint has no run.json to give
#: inference the recipe's 2 mm grid, so that preset would time the 1 mm one).
CASES = {"full": 6, "demo": 6, "tiny": 4}


def save_random_checkpoint(variants: dict, ids: dict, path: Path) -> Path:
    """The network of the configuration, initialised with seed 0, saved as a plain state dict (as training does)."""
    parser = build_parser("inference", variants, {**ids, "device": "cpu"})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


def _name(transform: object) -> str:
    return type(transform).__name__.removesuffix("d")


def run_config(name: str, variants: dict, ids: dict, *, device: str, cases: int) -> dict:
    """Segment ``cases`` cases with the inference evaluator of ``variants``; return the timings."""
    parser = build_parser("inference", variants, ids)
    apply_process_settings(parser, training=False)
    # the first `cases` cases of the folder, without the data check (the benchmark's own synthetic data)
    parser["infer_checked"] = f"$@data.inference_items(@infer_fold)[:{cases}]"
    evaluator = parser.get_parsed_content("evaluator")
    post = parser.get_parsed_content("postprocessing")
    timed = [TimedTransform(t, device) for t in post.transforms]
    post.transforms = timed
    timer = StepTimer(device, forward=True)
    timer.attach(evaluator)
    first: list[float] = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED(once=1), lambda _: first.append(time.perf_counter()))
    writers = parser.get_parsed_content("infer_report").writers
    if on_cuda(device):
        torch.cuda.reset_peak_memory_stats()
    evaluator.run()
    writers.close()  # as InferenceReport.finish: every segmentation written
    end_to_end = (time.perf_counter() - first[0]) / (cases - 1)
    write = timed[-1].seconds[1:]  # SaveBratsLabeld, the last transform; the first case is not counted
    if len(write) != len(timer.steps):
        raise RuntimeError(f"{name}: {len(timer.steps)} timed cases but {len(write)} writes")
    volume = [step - w for step, w in zip(timer.steps, write, strict=True)]
    out = {"name": name, "volume": volume, "write": write, "network": timer.network, "data": timer.data,
           "end_to_end": [end_to_end], "writer_threads": writers.threads,
           "post": {_name(t.transform): t.seconds[1:] for t in timed[:-1]},
           "amp": amp_mode(parser, bool(evaluator.amp)),
           "sw_batch_size": int(parser.get_parsed_content("inferer#sw_batch_size")),
           "workers": int(parser.get_parsed_content("num_workers")),
           "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_cuda(device) else None}
    del evaluator, parser, post
    gc.collect()
    if on_cuda(device):
        torch.cuda.empty_cache()
    return out


def combine(runs: list[dict]) -> dict:
    """Pool the cases of several runs of one configuration and take medians."""
    pooled = {k: [x for r in runs for x in r[k]] for k in ("volume", "write", "network", "data", "end_to_end")}
    post = {k: statistics.median([x for r in runs for x in r["post"][k]]) for k in runs[0]["post"]}
    out = {**runs[0], **{k: statistics.median(v) for k, v in pooled.items()}, "post": post,
           "cases": len(pooled["volume"]), "repeats": len(runs)}
    if runs[0]["peak_gib"] is not None:
        out["peak_gib"] = max(r["peak_gib"] for r in runs)
    return out


def report(r: dict) -> str:
    post = ", ".join(f"{k} {v * 1000:.0f}" for k, v in r["post"].items())
    writing = (f"writing the NIfTI {r['write']:.3f} s apart" if not r["writer_threads"] else
               f"handing the segmentation to {r['writer_threads']} writer thread(s) {r['write']:.3f} s apart")
    line = (f"{r['name']:>5}: {r['volume']:.3f} s per volume (median of {r['cases']} cases, {r['repeats']} run(s)); "
            f"{writing}\n"
            f"       end to end, every file written: {r['end_to_end']:.3f} s per case (median of runs)\n"
            f"       of which sliding window {r['network']:.3f} s, waiting for data {r['data']:.3f} s; "
            f"post-processing ms: {post}\n"
            f"       amp {r['amp']}, sw_batch_size {r['sw_batch_size']}, "
            f"{r['workers']} loader workers")
    if r["peak_gib"] is not None:
        line += f", peak GPU memory {r['peak_gib']:.2f} GiB"
    return line


def main(argv: list[str] | None = None) -> int:
    ap = argument_parser(__doc__.splitlines()[0], presets=CASES)
    ap.add_argument("--cases", type=int, help="cases segmented per run, the first not counted (default by preset)")
    ap.add_argument("--no-sync", action="store_true",
                    help="leave out ours_sync (ours writing in the main thread, to measure the background writers)")
    args = ap.parse_args(argv)
    preset_name = "tiny" if args.tiny else args.preset
    cases = args.cases or CASES[preset_name]
    if not 2 <= cases <= PRESETS[preset_name]["cases"]:
        raise SystemExit(f"--cases must be 2 to {PRESETS[preset_name]['cases']} (the first case is not counted), "
                         f"got {cases}")
    preset_name, preset, data = prepare(args)
    work = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    common = {"dataset_dir": str(data), "device": args.device, "overwrite": True, "data_check": "off",
              **preset["ids"], **dict(args.both)}
    variants = dict(preset["variants"])
    common["ckpt_path"] = str(save_random_checkpoint(variants, common, work / "model.pt"))
    plain = (variants, {**common, "amp": False, "writer_threads": 0, "run_dir": str(work / "plain")})
    ours = ({"fast": True, **variants}, {**common, **dict(args.ours), "run_dir": str(work / "ours")})
    configs = {"plain": plain, "ours": ours,  # ours_sync: ours writing in the main thread, the writers' effect
               "ours_sync": (ours[0], {**ours[1], "writer_threads": 0, "run_dir": str(work / "ours_sync")})}
    names = [*args.configs, *(["ours_sync"] if "ours" in args.configs and not args.no_sync else [])]
    print(f"preset {preset_name}: {cases} cases of {preset['shape']} from {data}, roi "
          f"{build_parser('inference', variants, common).get_parsed_content('roi_size')}; plain = common + "
          f"{describe('inference', plain[0])} (amp off); ours = common + {describe('inference', ours[0])}")
    if args.both or args.ours:
        print(f"overrides: both {dict(args.both)}; ours {dict(args.ours)}")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    try:
        for r in range(args.repeats):  # alternate the order, so that neither always runs first
            for name in names if r % 2 == 0 else names[::-1]:
                variants_, ids = configs[name]
                with isolated_settings():
                    runs[name].append(run_config(name, variants_, ids, device=args.device, cases=cases))
                print(f"  run {r + 1}/{args.repeats} {name}: {statistics.median(runs[name][-1]['volume']):.3f} "
                      "s per volume", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {name: combine(rs) for name, rs in runs.items()}
    for name in names:
        print(report(results[name]), flush=True)
    if "plain" in results and "ours" in results:
        ratio = results["plain"]["volume"] / results["ours"]["volume"]
        e2e = results["plain"]["end_to_end"] / results["ours"]["end_to_end"]
        print(f"ratio plain/ours: {ratio:.2f}x faster per volume (writing excluded), {e2e:.2f}x end to end")
    if "ours_sync" in results:
        sync, ours_r = results["ours_sync"], results["ours"]
        print(f"background writers: {ours_r['end_to_end']:.3f} s per case end to end, against "
              f"{sync['end_to_end']:.3f} s writing in the main thread (whose writing takes {sync['write']:.3f} s): "
              f"the writer adds {ours_r['end_to_end'] - (sync['end_to_end'] - sync['write']):.3f} s of its "
              f"{sync['write']:.3f} s to each case")
    if args.device == "cuda" and preset_name == "full" and "ours" in results:
        print(f"target (one H200): <= 0.1 s per case end to end: ours {results['ours']['end_to_end']:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
