"""``make demo``: synthetic data -> datalist -> training -> inference -> evaluation, each stage timed.

Training, inference and evaluation run as the user would run them, through ``python -m monai.bundle run ...``
subprocesses on this repository's bundle (each line printed; run with MONAI's harmless notices silenced,
`pipeline.commands.run_stage`), so the demo exercises the same commands as the README. It ends with the three
commands that do the same on one's own data.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from pipeline.commands import next_steps, run_stage
from pipeline.core.errors import UserError
from pipeline.core.files import FolderLock
from pipeline.data.datalist import write_datalist
from pipeline.data.synthetic import DEFAULT_SHAPE, remove_synthetic, write_dataset
from pipeline.evaluation.regions import dice_line, format_table
from pipeline.model.record import RUN_ARTEFACTS

BUNDLE = Path(__file__).resolve().parent.parent / "bundle"
CONFIGS = BUNDLE / "configs"
DEMO_FOLDS = 4          # 16 cases: 12 train, 4 validate
DEMO_FOLD = 0


def _stage(name: str, timings: dict[str, float], bundle: tuple[str, dict, dict] | None = None,
           fn=None) -> None:  # noqa: ANN001
    """Run one stage: ``bundle`` ``(run_id, ids, variants)`` through `run_stage`, or ``fn()``; time it."""
    print(f"\n=== {name} ===", flush=True)
    t = time.perf_counter()
    if bundle is not None:
        run_id, ids, variants = bundle
        returncode = run_stage(run_id, ids, verb=None, **variants)
        if returncode != 0:
            raise SystemExit(f"demo: stage '{name}' failed with exit code {returncode} (see the log above)")
    else:
        fn()
    timings[name] = time.perf_counter() - t
    print(f"--- {name}: {timings[name]:.1f} s", flush=True)


def clean_demo(run_dir: str | os.PathLike = "runs/demo", data_dir: str | os.PathLike = "data/synthetic") -> list[str]:
    """``make clean``: delete the demo's run folder and the synthetic cases synth wrote (`remove_synthetic`: files
    it did not write stay). Returns what was kept and why, one line each.

    Raises:
        UserError: a live process writes in the run folder (a demo still running: its training, inference or
            evaluation holds a lock there).
    """
    run = Path(run_dir)
    for lock in sorted(run.rglob(FolderLock.NAME)) if run.is_dir() else []:
        holder = FolderLock(lock.parent, what="clean").holder()
        if holder:
            raise UserError(f"{lock.parent} is being written ({holder}): let the demo finish (or stop it), then "
                            "make clean again")
    if run.is_dir():
        shutil.rmtree(run)
    kept = remove_synthetic(data_dir)
    return [f"kept {len(kept)} file(s) in {data_dir} that synth did not write (e.g. {kept[0]})"] if kept else []


def demo_line(summary: dict, seconds: float) -> str:
    """``demo: mean Dice 0.873 (ET 0.812, TC 0.861, WT 0.946) in 412 s`` from an evaluation summary."""
    return f"demo: {dice_line(summary)} in {seconds:.0f} s"


def free_run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` if it holds no run (trained or started: its run.json or datalist.json), else the first
    ``<run_dir>_<n>`` that does not: a second ``make demo`` never writes over the first one's model, segmentations,
    numbers or split."""

    base = Path(run_dir)
    candidate, n = base, 1
    while any((candidate / "models" / name).exists() for name in RUN_ARTEFACTS) or any(
            (candidate / name).exists() for name in ("seg", "run.json", "datalist.json")):  # a run, even unfinished
        n += 1
        candidate = base.with_name(f"{base.name}_{n}")
    if candidate != base:
        print(f"{base} holds an earlier demo run: this one goes to {candidate}", flush=True)
    return candidate


def demo_data(data_dir: str | os.PathLike, **settings: object) -> list[Path]:
    """The demo's synthetic cases in ``data_dir`` (`pipeline.data.synthetic.write_dataset`): a folder holding other
    files is refused with the demo's own way out (it has no ``--force``)."""
    try:
        return write_dataset(data_dir, **settings)
    except UserError as e:
        raise UserError(f"{e}; for the demo, pass --data-dir a new folder (python -m pipeline demo --data-dir "
                        "DIR)") from None


def run_demo(data_dir: str = "data/synthetic", run_dir: str = "runs/demo", cases: int = 16,
             shape: tuple[int, int, int] | None = None, seed: int = 0, epochs: int | None = None,
             started_at: float | None = None, fast: bool = True) -> dict:
    """Run the whole pipeline on synthetic data and print each stage's time, the table and the ``demo:`` line.

    ``fast`` trains and infers with ``fast.yaml`` merged before ``demo.yaml`` (float16 cache, patches without
    metadata or copies, bfloat16 autocast on a CPU that has it, else channels-last-3d training; bench/RESULTS.md);
    False runs the plain configuration. Evaluation is the same either way.

    Returns the evaluation summary (see `pipeline.evaluation.regions.evaluate_folders`).
    """

    t0 = started_at if started_at is not None else time.time()
    if int(cases) < DEMO_FOLDS:
        raise UserError(f"the demo splits its synthetic cases into {DEMO_FOLDS} folds (one validates): pass --cases "
                        f"{DEMO_FOLDS} or more, not {cases}")
    shape = tuple(shape or DEFAULT_SHAPE)
    run = free_run_dir(run_dir)
    datalist = run / "datalist.json"
    common = {"dataset_dir": data_dir, "datalist": datalist, "run_dir": run}
    timings: dict[str, float] = {}

    _stage("synthetic data", timings, fn=lambda: demo_data(data_dir, cases=cases, shape=shape, seed=seed))
    _stage("datalist", timings, fn=lambda: write_datalist(data_dir, datalist, folds=DEMO_FOLDS, seed=seed))
    train_overrides = {**common, "fold": DEMO_FOLD}
    if epochs is not None:
        train_overrides["epochs"] = epochs
    _stage("training", timings, ("training", train_overrides, {"fast": fast, "demo": True}))
    _stage("inference", timings, ("inference", {**common, "infer_fold": DEMO_FOLD}, {"fast": fast, "demo": True}))
    _stage("evaluation", timings, ("evaluate", {**common, "infer_fold": DEMO_FOLD}, {}))

    summary = json.loads((run / "eval" / "summary.json").read_text())
    print("\n=== results on the validation fold ===")
    print(format_table(summary))
    print("\nstage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"segmentations: {run / 'seg'}  metrics and report.html: {run / 'eval'}  model: "
          f"{run / 'models' / 'model.pt'}")
    print("\nyour own data: train on the cases of TRAIN (a BraTS download, the Decathlon's Task01, an nnU-Net "
          "dataset), segment and score other patients' in TEST:")
    print("\n".join(f"  {line}" for line in next_steps()))
    print(demo_line(summary, time.time() - t0), flush=True)
    return summary
