"""Accuracy on real tumours within a time budget, through the bundle's own commands; the time-to-Dice curve.

Usage::

    python bench/bench_accuracy.py --train-dir DIR --test-dir DIR --minutes M [--device cpu|cuda] [--out DIR]
                                   [--recipe budget|default] [--network unet|segresnet|dynunet]
                                   [--folds K | --all-cases] [--set ID VALUE ...] [--seed 0]

1. trains on every case of ``--train-dir`` with ``monai.bundle run training`` and the budget recipe (``fast.yaml``
   and ``budget.yaml``: ``--time_budget_min M``), its own validation fold choosing the best model
   (``--all-cases``: none validates, the last model segments, no time-to-Dice curve); with
   ``--folds K`` the budget is split over K models (folds 0..K-1 of a 5-fold datalist, M/K minutes each);
2. segments every case of ``--test-dir`` with ``monai.bundle run inference`` (the run's own recipe; with
   ``--folds K``, the mean probability of the K models: ``variants/ensemble.yaml``);
3. scores them with ``monai.bundle run evaluate`` (legacy protocol: Dice per region, BraTS's empty-region rules);
4. writes ``OUT/time_to_dice.png`` and ``OUT/time_to_dice.csv`` (validation Dice against training minutes), prints
   the machine, and ends with exactly one line::

    accuracy: mean Dice 0.812 (ET 0.741, TC 0.803, WT 0.893) on 24 test cases, 45.0 min of training on cpu ...

(one line, ending ``(30 training cases)``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import machine  # noqa: E402
from pipeline.bundle import NETWORKS, command  # noqa: E402
from pipeline.commands import set_ids  # noqa: E402
from pipeline.core.errors import UserError  # noqa: E402
from pipeline.core.figures import plt, save_figure  # noqa: E402
from pipeline.core.files import atomic_write_text, hold_folder, read_table  # noqa: E402
from pipeline.core.process import run_child, run_main  # noqa: E402
from pipeline.data.layouts import discover_cases, output_guard  # noqa: E402
from pipeline.evaluation.regions import dice_line  # noqa: E402
from pipeline.training.monitoring import HISTORY_TABLE  # noqa: E402

#: The recipes: the bundle variants each trains and infers with.
RECIPES = {"budget": {"fast": True, "budget": True}, "default": {"fast": True}}
#: The datalist's folds when the budget trains several models (``--folds K`` trains folds 0..K-1).
FOLDS = 5


#: The bundle ids the benchmark sets from its own options (id -> the option): ``--set`` may not set them.
BENCH_OPTIONS = {"dataset_dir": "--train-dir/--test-dir", "datalist": "--folds", "fold": "--folds",
                 "ensemble_folds": "--folds", "time_budget_min": "--minutes", "device": "--device", "seed": "--seed",
                 "run_dir": "--out", "output_dir": "--out", "eval_dir": "--out"}


def stage_ids(ids: dict[str, str], stages: dict[str, dict]) -> dict[str, dict[str, str]]:
    """``--set`` ids per stage (``{"training": variants, "inference": variants}``): a top-level id to the stages
    whose configuration holds it (``learning_rate``: training; ``label_scheme``: both), a nested one
    (``train#optimizer#momentum`` or ``train::optimizer::momentum``) to the stages whose configuration holds its
    parent as a section or a list long enough (the inference config has no ``train#optimizer``): each stage refuses
    an id its configuration does not hold (`pipeline.bundle.unknown_cli_ids`).

    Raises:
        SystemExit: an id no stage holds, before anything trains.
    """
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    from pipeline.bundle import config_files

    def holds(parser: ConfigParser, key: str) -> bool:
        parent, last = ReferenceResolver.split_id(ReferenceResolver.normalize_id(key), last=True)
        if not parent:
            return ReferenceResolver.normalize_id(key) in parser
        if parent not in parser:
            return False
        container = parser[parent]
        return isinstance(container, dict) or (isinstance(container, list) and last.isdigit()
                                                and int(last) < len(container))

    routed: dict[str, dict[str, str]] = {stage: {} for stage in stages}
    for stage, variants in stages.items():
        parser = ConfigParser()
        with warnings.catch_warnings():  # fast.yaml over inference.yaml: its training part has nothing to merge into
            warnings.filterwarnings("ignore", message=r"Can't merge entry \['\+train'\]")
            parser.read_config(config_files(stage, **variants))
        for key, value in ids.items():
            if holds(parser, key):
                routed[stage][key] = value
    missing = [key for key in ids if not any(key in taken for taken in routed.values())]
    if missing:
        nested = "#" in missing[0] or "::" in missing[0]
        held = "a section or list to hold it" if nested else "this id (its spelling?)"
        raise SystemExit(f"bench_accuracy: --set {missing[0]}: no stage's configuration has {held}; set an id of "
                         f"{' or '.join(stages)} (python -m pipeline.bundle configs ...)")
    return routed


def _run(step: str, cmd: list[str], log: Path) -> float:
    """Run one bundle command, its output to ``log``; its wall-clock seconds. Exits with the log's tail on failure."""
    print(f"--- {step}: {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        returncode = run_child(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)  # a stop reaches the stage
    seconds = time.perf_counter() - started
    if returncode != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"bench_accuracy: {step} failed (exit {returncode}); its log: {log}")
    print(f"--- {step}: {seconds / 60:.1f} min", flush=True)
    return seconds


def time_to_dice(history: Path, out: Path, title: str) -> list[dict]:
    """``[{"minutes", "epoch", "val_mean_dice", "val_dice_<region>"...}]`` of each validation in ``history.csv``,
    written to ``out/time_to_dice.csv`` and drawn as ``out/time_to_dice.png``."""
    rows = [r for r in read_table(history, ("epoch", "elapsed"), HISTORY_TABLE) if r.get("val_mean_dice")]
    points = [{"minutes": round(float(r["elapsed"]) / 60, 2), "epoch": int(float(r["epoch"])),
               **{k: round(float(v), 4) for k, v in r.items() if k.startswith("val_") and v}} for r in rows]
    if not points:
        return points
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(points[0]))
    writer.writeheader()
    writer.writerows(points)
    atomic_write_text(out / "time_to_dice.csv", table.getvalue())
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in [k for k in points[0] if k.startswith("val_")]:
        label = "mean" if key == "val_mean_dice" else key[len("val_dice_"):].upper()
        ax.plot([p["minutes"] for p in points], [p[key] for p in points], "--" if label == "mean" else "-",
                marker="o", ms=3, label=label)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=9)
    save_figure(fig, out / "time_to_dice.png")
    return points


#: Everything the benchmark writes in ``--out`` (a folder holding any of them is refused before anything is written).
BENCH_OUTPUTS = ("run", "seg", "eval", "datalist.log", "training.log", "training_fold_*.log", "inference.log",
                 "evaluation.log", "accuracy.json", "time_to_dice.csv", "time_to_dice.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-dir", required=True, help="a BraTS dataset folder: every case trains or validates")
    p.add_argument("--test-dir", required=True, help="a labelled BraTS dataset folder of other patients")
    p.add_argument("--minutes", type=float, required=True, help="the training budget (time_budget_min)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default="runs/bench_accuracy", help="folder of the run, segmentations and evaluation")
    p.add_argument("--recipe", default="budget", choices=list(RECIPES))
    p.add_argument("--network", default="unet", choices=list(NETWORKS),
                   help="the network overlay the recipe trains (bundle/configs/networks/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=1,
                   help="K > 1: the budget split over K models (folds 0..K-1 of a 5-fold datalist, M/K minutes "
                        "each), their mean probability segments the test cases (nnU-Net's fold ensemble)")
    p.add_argument("--all-cases", action="store_true",
                   help="every case of --train-dir trains and the last model segments (nnU-Net's fold all: no "
                        "validation, no model selection); with --folds 1 only")
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("ID", "VALUE"),
                   help="another bundle id (an ablation), to the stages whose configs hold it: --set learning_rate "
                        "0.003, --set train#optimizer#momentum 0.9")
    args = p.parse_args(argv)
    try:  # the verbs' reader of --set: an id given twice, or one of the benchmark's own options, is refused
        extra = set_ids([word for pair in args.set for word in pair], BENCH_OPTIONS)
    except UserError as e:
        raise SystemExit(f"bench_accuracy: {e}") from None

    if not 1 <= args.folds <= FOLDS:
        raise SystemExit(f"bench_accuracy: --folds must be 1 to {FOLDS}, got {args.folds}")
    if args.all_cases and args.folds != 1:
        raise SystemExit(f"bench_accuracy: --all-cases trains one model on every case; --folds {args.folds} splits "
                         "them: give one of the two")
    if not args.minutes > 0 or round(args.minutes / args.folds, 3) <= 0:
        raise SystemExit(f"bench_accuracy: --minutes must give each of the {args.folds} model(s) a budget above 0, "
                         f"got {args.minutes} (0 would train train.yaml's epochs, not a budget)")
    out = Path(args.out).resolve()
    try:  # one benchmark writes a folder at a time (a second would replace the first's logs); held until it exits
        # not among its inputs nor in any dataset: its logs are written before training would refuse the folder
        output_guard(roots=[args.train_dir, args.test_dir]).folder(out, what="the benchmark", option="--out")
        hold_folder(out, what="bench_accuracy")
    except UserError as e:
        raise SystemExit(f"bench_accuracy: {e}") from None
    earlier = sorted({p.name for pattern in BENCH_OUTPUTS for p in out.glob(pattern)})
    if earlier:  # an earlier benchmark's logs (or a user's file of a name it writes) would be replaced
        raise SystemExit(f"bench_accuracy: {out} holds an earlier benchmark or files of the names it writes "
                         f"({', '.join(earlier)}): pass another --out, or move them away")
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"
    print(machine(args.device), flush=True)
    n_train = len(discover_cases(args.train_dir))
    test_cases = sorted(c.case_id for c in discover_cases(args.test_dir) if c.label)
    n_test = len(test_cases)
    variants = {**RECIPES[args.recipe], "network": args.network}
    ids = stage_ids(extra, {"training": variants, "inference": {**variants, "ensemble": args.folds > 1}})
    common = {"device": args.device, "seed": args.seed, "run_dir": run}
    train_dir, test_dir = Path(args.train_dir).resolve(), Path(args.test_dir).resolve()
    if args.folds > 1:
        datalist = run / "datalist.json"
        log = out / "datalist.log"
        with open(log, "w") as written:  # a stop reaches the command (run_child), as it reaches each stage
            made = run_child([sys.executable, "-m", "pipeline", "datalist", str(train_dir), "--out", str(datalist),
                              "--folds", str(FOLDS), "--seed", str(args.seed)], cwd=REPO, stdout=written,
                             stderr=subprocess.STDOUT)
        if made != 0:  # its own one-line refusal, last
            lines = log.read_text().strip().splitlines() or ["(no output)"]
            raise SystemExit(f"bench_accuracy: the datalist of {train_dir} could not be written: {lines[-1]}")
        runs = [run / f"fold_{f}" for f in range(args.folds)]
        train_s = sum(_run(f"training fold {f}", command("training", {
            **common, **ids["training"], "dataset_dir": train_dir, "datalist": datalist, "fold": f,
            "run_dir": fold_run,
            "time_budget_min": round(args.minutes / args.folds, 3)}, **variants), out / f"training_fold_{f}.log")
            for f, fold_run in enumerate(runs))
        inference = {**common, **ids["inference"], "ensemble_folds": f"[{','.join(map(str, range(args.folds)))}]"}
        variants = {**variants, "ensemble": True}
    else:
        runs = [run]
        every = {"fold": "all"} if args.all_cases else {}  # model.pt is then the last model
        train_s = _run("training", command("training", {**common, **ids["training"], "dataset_dir": train_dir,
                                                         **every, "time_budget_min": args.minutes}, **variants),
                       out / "training.log")
        inference = {**common, **ids["inference"]}
    _run("inference", command("inference", {**inference, "dataset_dir": test_dir, "output_dir": out / "seg"},
                              **variants), out / "inference.log")
    told = {k: v for k, v in extra.items() if k == "label_scheme"}  # the numbering of the data, scored in it too
    _run("evaluation", command("evaluate", {"dataset_dir": test_dir, "run_dir": runs[0], **told,
                                            "output_dir": out / "seg", "eval_dir": out / "eval"}),
         out / "evaluation.log")

    summary = json.loads((out / "eval" / "summary.json").read_text())  # the regions the data's scheme evaluates
    dice = {r: v["dice"]["mean"] for r, v in summary["regions"].items()}
    history = json.loads((runs[0] / "run.json").read_text())
    points = time_to_dice(runs[0] / "history.csv", out, f"{args.recipe} recipe ({args.network}), "
                          f"{args.minutes / len(runs):g} min "
                          f"on {args.device}, {n_train} training cases" + (" (fold 0)" if len(runs) > 1 else ""))
    for point in points:
        print(f"  {point['minutes']:6.1f} min  epoch {point['epoch']:4d}  val mean Dice {point['val_mean_dice']:.4f}")
    record = {"minutes": args.minutes, "device": args.device, "recipe": args.recipe, "network": args.network,
              "set": extra, "folds": len(runs), "all_cases": args.all_cases,
              "train_cases": n_train, "test_cases": n_test, "training_wall_s": round(train_s, 1), "dice": dice,
              "mean_dice": summary["mean_dice"], "hd95": {r: summary["regions"][r]["hd95"]["mean"] for r in dice},
              "split": history.get("split"), "test": test_cases,  # the split is rebuilt from these two
              "time_to_dice": points}
    atomic_write_text(out / "accuracy.json", json.dumps(record, indent=2))
    print(f"accuracy: {dice_line(summary)} on {n_test} test cases, {args.minutes:.1f} min of training on "
          f"{args.device} ({n_train} training cases)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))  # a stopped benchmark stops its stage, which releases its run folder, and says so
