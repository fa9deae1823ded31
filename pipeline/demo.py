"""``make demo``: synthetic data -> datalist -> training -> inference -> evaluation, each stage timed.

Training, inference and evaluation run as the user would run them, through ``python -m monai.bundle run ...``
subprocesses on this repository's bundle (each line printed; run with MONAI's harmless notices silenced,
`pipeline.commands.run_stage`), so the demo exercises the same commands as the README. It ends with the three
commands that do the same on one's own data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from pipeline.commands import next_steps, run_stage
from pipeline.core.errors import UserError
from pipeline.core.figures import drawn_here
from pipeline.core.files import FolderLock, hold_folder, read_json
from pipeline.core.kinds import RUN_WRITES, refuse_other_kinds
from pipeline.core.provenance import Provenance
from pipeline.data.datalist import write_datalist
from pipeline.data.synthetic import DEFAULT_SHAPE, SETTINGS_FILE, remove_synthetic, write_dataset
from pipeline.evaluation.evaluate import EVALUATION_OUTPUTS
from pipeline.evaluation.regions import dice_line, format_table
from pipeline.inference.viewing import VIEWER_TABLES
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


def _demo_run(run: Path) -> bool:
    """Whether ``run`` is a run the demo made: its run.json names ``demo.yaml`` among its config files, or (a demo
    stopped before training) it holds only the demo's datalist.json and empty folders."""
    from pipeline.model.record import read_record

    record = read_record(run)
    if record is not None:  # demo.yaml, and trained on the demo's own datalist in that folder (not a user's run)
        datalist = (record.get("ids") or {}).get("datalist")
        return ("demo.yaml" in {Path(f).name for f in record.get("config_files") or []} and bool(datalist)
                and Path(str(datalist)).resolve() == (run / "datalist.json").resolve())
    return all(p.is_dir() or p.name in ("datalist.json", FolderLock.NAME) for p in run.rglob("*"))


#: The folder inside a demo's run folder that the demo process holds (`FolderLock`) from its first stage to its
#: last: between stages no stage holds a lock, and ``make clean`` must still see a demo running.
RUNNING = ".demo"


#: What the demo writes in its run folder (training, inference into ``seg``, evaluation into ``eval``, its lock),
#: as glob patterns under it, with the segmentations ``seg/provenance.json`` records (`demo_files`): ``make clean``
#: deletes these and keeps anything else there (segmentations of other data made with the demo's model, an export in
#: ``models/``, a user's notes or NIfTI files), naming it. tests/e2e/test_demo.py checks a demo's run folder
#: against it.
DEMO_FILES = ("datalist.json", *RUN_WRITES, "run.json", FolderLock.NAME,
              f"{RUNNING}/{FolderLock.NAME}", *(f"models/{name}" for name in RUN_ARTEFACTS),
              f"models/{FolderLock.NAME}",
              *(f"seg/{name}" for name in VIEWER_TABLES), "seg/provenance.json",
              f"seg/{FolderLock.NAME}", *(f"eval/{pattern}" for pattern in EVALUATION_OUTPUTS),
              f"eval/{FolderLock.NAME}", "tensorboard/events.out.tfevents.*")
#: The folders it makes there (deleted once empty).
DEMO_FOLDERS = (RUNNING, "models", "seg", "eval/overlays", "eval", "tensorboard")


def demo_files(run: Path) -> list[Path]:
    """The files in ``run`` that the demo writes (`DEMO_FILES`)."""
    found = {f for pattern in DEMO_FILES for f in run.glob(pattern) if f.is_file() or f.is_symlink()}
    try:  # its segmentations, by its record (a user's file: kept)
        found |= set(Provenance(run / "seg").written_files())
    except UserError:  # a record that cannot be read names no file: every segmentation is kept, and named
        pass
    return sorted(f for f in found if f.suffix != ".png" or drawn_here(f))  # a picture of the user's: kept


def clean_demo(run_dir: str | os.PathLike = "runs/demo", data_dir: str | os.PathLike = "data/synthetic") -> list[str]:
    """``make clean``: delete what the demo wrote in its run folder (`DEMO_FILES`; the folder too once nothing else
    is left) and the synthetic cases synth wrote (`remove_synthetic`: files it did not write stay). Returns what was
    kept and why, one line each. Nothing is deleted while a demo runs (its `RUNNING` lock, or a stage's) or synth
    writes the data folder.

    Raises:
        UserError: a live process writes in the run folder or the data folder (naming it, and the lock to delete
            if no such process runs).
    """
    run, data = Path(run_dir), Path(data_dir)
    demos = [run, *sorted(p for p in run.parent.glob(f"{run.name}_*") if p.name[len(run.name) + 1:].isdigit())]
    locks = [lock for d in demos if d.is_dir() for lock in sorted(d.rglob(FolderLock.NAME))]  # a second demo's too:
    locks += [data / FolderLock.NAME] if (data / FolderLock.NAME).exists() else []    # it reads data_dir
    for lock in locks:
        holder = FolderLock(lock.parent, what="clean").holder()
        if holder:
            raise UserError(f"{lock.parent} is being written ({holder}): let the demo or synth finish (or stop it), "
                            f"then make clean again; if no such process runs, delete {lock}")
    ours = demo_files(run) if run.is_dir() else []
    if ours and not _demo_run(run):  # (a folder the demo's files have left, cleaned before: only what is kept)
        raise UserError(f"{run} is not a demo's run (its run.json names no demo.yaml, or it holds more than a demo "
                        "writes before training): make clean deletes only the demo's; delete it by name")
    lines = []
    if run.is_dir():
        for f in ours:
            f.unlink(missing_ok=True)
        for folder in DEMO_FOLDERS:
            with contextlib.suppress(OSError):  # not there, or holding what the demo did not write
                (run / folder).rmdir()
        others = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_symlink() or not p.is_dir())
        if others:
            lines.append(f"kept {len(others)} file(s) in {run} that the demo did not write ({', '.join(others[:5])}"
                         f"{', ...' if len(others) > 5 else ''}): delete them by name")
        else:
            shutil.rmtree(run)  # empty folders only
    if not data.is_dir():
        return lines
    if not (data / SETTINGS_FILE).is_file():
        return [*lines, f"kept {data}: synth did not write it (no {SETTINGS_FILE})"]
    kept = remove_synthetic(data)
    if not kept:
        return lines
    return [*lines, f"kept {len(kept)} file(s) in {data} that synth did not write (e.g. {kept[0]})"]


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
        return write_dataset(data_dir, **settings, option="--data-dir")
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
    refuse_other_kinds(run, "run", "--run-dir")  # not into a model's segmentations or an evaluation
    hold_folder(run / RUNNING, what="make demo")  # until the demo ends: make clean refuses meanwhile
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

    summary = read_json(run / "eval" / "summary.json")
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
