"""Measure TTA and each post-processing step, with and without, on held-out synthetic cases or a run's own
validation cases (real ones: no test case chooses the post-processing).

    python bench/bench_postprocessing.py --run-dir runs/demo      # after `make demo`
    python bench/bench_postprocessing.py --run-dir runs/accA45/run --budget \
        --datalist runs/accA45/run/datalist.json --fold 0 \
        --reference data/splits/A/train              # BraTS-size thresholds, the budget recipe

Writes ``--cases`` new synthetic cases with a seed the demo never trained on, runs the bundle's inference
once per variant (``python -m monai.bundle run inference`` with demo.yaml and the run's ``model.pt``),
evaluates each with :func:`pipeline.evaluation.regions.evaluate_folders`, and prints the machine and a Markdown
table: mean Dice per region, mean HD95, and seconds per case.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import machine  # noqa: E402
from pipeline.bundle import inference_command  # noqa: E402

#: name -> bundle overrides. Thresholds are scaled to the demo's 96 x 96 x 64 volumes (BraTS 2020's winner
#: used 500 ET voxels on 240 x 240 x 155, 15x more voxels).
VARIANTS: dict[str, dict[str, object]] = {
    "plain": {},
    "mirror TTA (8 flips)": {"tta": True},
    "remove components < 20 voxels": {"min_component_size": 20},
    "ET < 50 voxels -> necrosis": {"min_et_voxels": 50},
    "all three": {"tta": True, "min_component_size": 20, "min_et_voxels": 50},
}

#: The same at BraTS size (240 x 240 x 155, 1 mm), around the run's recipe (the budget recipe: mirroring TTA and
#: whole-tumour components under half the largest dropped); each variant changes one id of it.
REAL_VARIANTS: dict[str, dict[str, object]] = {
    "the budget recipe": {},
    "no TTA": {"tta": False},
    "remove components < 1000 voxels": {"min_component_size": 1000},
    "ET < 500 voxels -> necrosis": {"min_et_voxels": 500},
    "tumour components < 0.1 of the largest dropped": {"min_tumour_fraction": 0.1},
    "tumour components < 0.3 of the largest dropped": {"min_tumour_fraction": 0.3},
    "largest tumour component only": {"min_tumour_fraction": 1.0},
    "sliding window 96^3 (192 mm at 2 mm: the whole brain in one or two windows)": {"sw_roi_size": [96, 96, 96]},
    "sliding window overlap 0.75": {"sw_overlap": 0.75},
}


def main(argv: list[str] | None = None) -> int:

    from pipeline.data.synthetic import write_dataset
    from pipeline.evaluation.regions import evaluate_folders

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo", help="a run of the demo (holds models/model.pt)")
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1, help="the demo trains on seed 0's cases")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datalist", help="score this datalist's --fold cases (a run's validation) instead")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--reference", help="with --datalist: the dataset folder holding the cases' labels")
    parser.add_argument("--only", help="with --datalist: the variants whose name contains this text")
    parser.add_argument("--budget", action="store_true", help="no effect, kept for older command lines: inference "
                        "applies the run's own recipe and preprocessing, as its run.json names them")
    args = parser.parse_args(argv)
    if args.datalist:
        return _validation(args)

    run = Path(args.run_dir)
    if not (run / "models" / "model.pt").is_file():
        raise SystemExit(f"no {run / 'models' / 'model.pt'}: run `make demo` first (or pass --run-dir)")
    heldout = run / "bench_pp" / "heldout"
    write_dataset(heldout, cases=args.cases, seed=args.seed)
    print(f"machine: {machine(args.device)}")
    print(f"model: {run / 'models' / 'model.pt'}; {args.cases} held-out synthetic cases, seed {args.seed}\n")
    rows = []
    for name, overrides in VARIANTS.items():
        out = run / "bench_pp" / name.split()[0].lower().replace("<", "")
        seg = out / "seg"
        cmd = inference_command(run, {"dataset_dir": heldout, "output_dir": seg, "device": args.device,
                                      "overwrite": True, **overrides})  # the run's own recipe and preprocessing
        t = time.perf_counter()
        returncode, output = _run(cmd)
        if returncode != 0:
            raise SystemExit(f"inference for '{name}' failed:\n{output[-6000:]}")
        seconds = (time.perf_counter() - t) / args.cases
        s = evaluate_folders(seg, heldout, out / "eval", scheme="auto")  # the reference's own scheme
        rows.append(_row(name, s, seconds))
        print(f"{name}: mean Dice {rows[-1][2]:.4f}", flush=True)
    _table(rows)
    return 0


def _row(name: str, summary: dict, seconds: float) -> tuple:
    """``(name, {region: mean Dice}, mean Dice, mean HD95, seconds)`` over the regions the summary evaluated."""
    dice = {r: v["dice"]["mean"] for r, v in summary["regions"].items()}
    hd95 = sum(v["hd95"]["mean"] for v in summary["regions"].values()) / len(dice)
    return name, dice, summary["mean_dice"], hd95, seconds


def _table(rows: list) -> None:
    regions = list(rows[0][1]) if rows else []
    print("\n| variant | " + " | ".join(f"Dice {r}" for r in regions)
          + " | mean Dice | mean HD95 (mm) | s / case (incl. start-up) |")
    print("| --- " * (len(regions) + 4) + "|")
    for name, dice, mean, hd95, seconds in rows:
        print(f"| {name} | " + " | ".join(f"{dice[r]:.4f}" for r in regions) + f" | {mean:.4f} | {hd95:.2f} | "
              f"{seconds:.2f} |")


def _validation(args: argparse.Namespace) -> int:
    """Each REAL_VARIANT on the ``--fold`` cases of ``--datalist`` (the run's validation cases)."""

    from pipeline.data.source import DataSource
    from pipeline.evaluation.regions import evaluate_folders

    run, datalist = Path(args.run_dir), Path(args.datalist).resolve()
    items = DataSource(args.reference, datalist).inference_items(args.fold)  # the cases inference segments
    cases = sorted(str(i["case"]) for i in items)
    if not items:
        raise SystemExit(f"bench_postprocessing: fold {args.fold} of {datalist} holds no case")
    print(f"machine: {machine(args.device)}")
    print(f"model: {run / 'models' / 'model.pt'}; {len(items)} validation cases (fold {args.fold} of {datalist})\n")
    rows = []
    for name, overrides in REAL_VARIANTS.items():
        if args.only and args.only not in name:
            continue
        out = run.parent / "bench_pp" / (re.sub(r"[^\w.-]+", "", "_".join(f"{k}_{v}" for k, v in overrides.items()))
                                         or "plain")
        cmd = inference_command(run, {"datalist": datalist, "infer_fold": args.fold, "output_dir": out / "seg",
                                      "device": args.device, "overwrite": True, **overrides})
        t = time.perf_counter()
        returncode, output = _run(cmd)
        if returncode != 0:
            raise SystemExit(f"inference for '{name}' failed:\n{output[-6000:]}")
        seconds = (time.perf_counter() - t) / len(items)
        s = evaluate_folders(out / "seg", args.reference, out / "eval", scheme="auto", cases=cases)
        rows.append(_row(name, s, seconds))
        print(f"{name}: mean Dice {rows[-1][2]:.4f}", flush=True)
    _table(rows)
    return 0


def _run(cmd: list[str]) -> tuple[int, str]:
    """Run one inference command; its exit status and output. A stop of this script (SIGTERM, Ctrl-C) stops it too,
    so that it releases its output folder (`pipeline.core.process.run_child`)."""
    import subprocess
    import tempfile

    from pipeline.core.process import run_child

    with tempfile.TemporaryFile("w+") as out:
        returncode = run_child(cmd, stdout=out, stderr=subprocess.STDOUT)
        out.seek(0)
        return returncode, out.read()


if __name__ == "__main__":
    from pipeline.core.process import run_main

    sys.exit(run_main(main))  # a stop stops its stage and is said once, here
