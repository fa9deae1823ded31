"""Watching a run: one line per epoch, ``history.csv`` and its curves (``progress.png``), progress bars with an ETA.

`EpochSummary` runs after the validation handler, so an epoch's line holds its validation Dice when there is one::

    epoch  12/300  loss 0.2345  lr 9.87e-04  Dice TC 0.901 WT 0.874 ET 0.812 mean 0.862  41.2 s
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.core.distributed import is_main_process
from pipeline.core.errors import UserError
from pipeline.core.figures import plt, region_colour, save_figure
from pipeline.core.files import atomic_write_text, column_numbers, read_table
from pipeline.data.colours import scheme_colours
from pipeline.data.labels import REGIONS
from pipeline.training.budget import Clock
from pipeline.training.validation import dice_name

logger = logging.getLogger("pipeline.train")

#: Columns of ``history.csv``; validation columns are empty in epochs without validation.
HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch", "loss", "lr", "val_mean_dice", "val_dice_tc", "val_dice_wt", "val_dice_et", "seconds", "elapsed")


def history_columns(regions: Sequence[str] = REGIONS) -> tuple[str, ...]:
    """The columns of ``history.csv`` for a network with these output ``regions`` (`HISTORY_COLUMNS` for
    TC, WT, ET)."""
    return ("epoch", "loss", "lr", "val_mean_dice", *(dice_name(r) for r in regions), "seconds", "elapsed")


def _loss_of(output: object) -> float:
    """The loss of one iteration from a SupervisedTrainer output (a decollated list of dicts, or a dict)."""
    first = output[0] if isinstance(output, (list, tuple)) else output
    loss = first["loss"]
    return float(loss.item() if isinstance(loss, torch.Tensor) else loss)


class EpochSummary:
    """Log one line per epoch and keep ``history.csv``; draw the training curves when training ends.

    Args:
        evaluator: the validation engine; its ``state.metrics`` are reported for epochs it ran in.
        history_file: CSV to append to (created with a header; an existing one from a resumed run is kept).
        plot_file: PNG of the curves written at the end of training; ``None`` for none.
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter`` for the learning rate; ``None`` for none.
        regions: the network's output regions, whose validation Dice each epoch line and history row hold.
        clock: the time budget (`pipeline.training.budget.Clock`), shown instead of the epoch count; ``elapsed``
            (seconds of training so far, validation included) is the clock's, else the sum of the epochs'.
        held_out: whether cases were held out to validate (``--fold all``: none, ``model.pt`` is the last model).
        scheme: the label scheme, whose colours the curves' regions take (`plot_training_curves`).
    """

    def __init__(self, evaluator=None, history_file: str | None = None, plot_file: str | None = None,  # noqa: ANN001
                 summary_writer=None, regions: Sequence[str] = REGIONS, clock: Clock | None = None,  # noqa: ANN001
                 held_out: bool = True, scheme: str | None = None) -> None:
        self.held_out = bool(held_out)
        self.scheme = scheme
        self.evaluator = evaluator if self.held_out else None
        self.regions = tuple(regions)
        self.columns = history_columns(self.regions)
        self.history_file = Path(history_file) if history_file else None
        self.plot_file = Path(plot_file) if plot_file else None
        self.writer = summary_writer
        self.clock = clock
        self._elapsed = 0.0
        self._losses: list[float] = []
        self._started = time.perf_counter()
        self._lr = math.nan
        self._history_checked = False

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _epoch_started(self, engine) -> None:  # noqa: ANN001
        self._losses, self._started = [], time.perf_counter()
        optimizer = getattr(engine, "optimizer", None)  # the rate this epoch trains with (schedulers step at its end)
        self._lr = optimizer.param_groups[0]["lr"] if optimizer is not None else math.nan

    def _iteration_completed(self, engine) -> None:  # noqa: ANN001
        self._losses.append(_loss_of(engine.state.output))

    def _validation(self, epoch: int) -> dict[str, float]:
        ev = self.evaluator
        if ev is None or getattr(ev.state, "epoch", None) != epoch:
            return {}
        return {k: float(v) for k, v in ev.state.metrics.items() if isinstance(v, (int, float))}

    def __call__(self, engine) -> None:  # noqa: ANN001
        if not is_main_process():
            return
        epoch, max_epochs = engine.state.epoch, engine.state.max_epochs
        loss = sum(self._losses) / len(self._losses) if self._losses else math.nan
        lr = self._lr
        seconds = time.perf_counter() - self._started
        val = self._validation(epoch)
        self._elapsed = self.clock.elapsed() if self.clock is not None else self._elapsed + seconds
        progress = (f"{self._elapsed / 60:.1f}/{self.clock.budget / 60:g} min" if self.clock is not None
                    else f"/{max_epochs}")
        line = f"epoch {epoch:>3}{progress if self.clock is None else ' ' + progress}  loss {loss:.4f}  lr {lr:.2e}"
        if val:
            dice = " ".join(f"{r} {val.get(dice_name(r), math.nan):.3f}" for r in self.regions)
            line += f"  Dice {dice} mean {val.get('val_mean_dice', math.nan):.3f}"
        logger.info("%s  %.1f s", line, seconds)
        if self.writer is not None:
            self.writer.add_scalar("lr", lr, epoch)
            self.writer.add_scalar("epoch_loss", loss, epoch)
        if self.history_file is not None:
            row = {"epoch": epoch, "loss": loss, "lr": lr, "seconds": round(seconds, 3),
                   "elapsed": round(self._elapsed, 3),
                   **{k: val[k] for k in self.columns if k in val}}
            self._append(row)

    def _append(self, row: dict) -> None:
        """Add ``row`` to the history, rewriting the file whole (atomically: a killed run never leaves half a
        line); the first time, drop rows of this epoch or later left by a run that was killed after writing them
        and resumed from an earlier checkpoint (whose last kept row's ``elapsed`` the epoch clock continues)."""
        path = self.history_file
        rows: list[dict] = []
        if path.exists() and path.stat().st_size > 0:
            rows = read_table(path, ("epoch",), HISTORY_TABLE)
            if not self._history_checked:
                rows = [r for r in rows if int(float(r["epoch"])) < row["epoch"]]
                if self.clock is None and rows and rows[-1].get("elapsed"):
                    self._elapsed += float(rows[-1]["elapsed"])
                    row["elapsed"] = round(self._elapsed, 3)
        self._history_checked = True
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([*rows, row])
        atomic_write_text(path, text.getvalue())

    def _completed(self, engine) -> None:  # noqa: ANN001
        if not is_main_process():
            return
        if self.writer is not None:
            self.writer.flush()
        if self.plot_file is not None and self.history_file is not None and self.history_file.exists():
            try:
                plot_training_curves(self.history_file, self.plot_file, scheme=self.scheme or "auto")
                logger.info("training curves: %s", self.plot_file)
            except Exception as e:  # a picture must never fail a finished training run
                logger.warning("could not draw %s: %s", self.plot_file, e)
        print(self.final_summary(engine), flush=True)

    def final_summary(self, engine) -> str:  # noqa: ANN001 - the trainer
        """What a user needs when training ends: device, cases, best Dice and its epoch, files, the next command."""
        n_train = len(getattr(getattr(engine, "data_loader", None), "dataset", ()) or ())
        loader = getattr(self.evaluator, "data_loader", None)
        n_val = len(getattr(loader, "dataset", ()) or ())
        rows = []
        if self.history_file is not None and self.history_file.exists():
            rows = [r for r in read_table(self.history_file, ("epoch",), HISTORY_TABLE)
                    if r.get("val_mean_dice") not in (None, "")]
        lines = [f"training finished: {engine.state.epoch} epoch(s) on {getattr(engine.state, 'device', None) or '?'}, "
                 f"{n_train} training and {n_val} validation case(s)"
                 f"{' per process' if torch.distributed.is_available() and torch.distributed.is_initialized() else ''}"]
        if rows:
            best = max(rows, key=lambda r: float(r["val_mean_dice"]))
            per_region = ", ".join(f"{r} {float(best[dice_name(r)]):.3f}" for r in self.regions
                                   if best.get(dice_name(r)))
            lines.append(f"best validation mean Dice {float(best['val_mean_dice']):.4f} at epoch {best['epoch']} "
                         f"({per_region})")
        run = self.history_file.parent if self.history_file is not None else None
        if run is not None:
            kept = "(best)" if self.held_out else "(the last: --fold all holds no case out to choose by)"
            lines.append(f"model: {run / 'models' / 'model.pt'} {kept}, model_last.pt; record: {run / 'run.json'}; "
                         f"history: {self.history_file}, {self.plot_file or ''}")
        return "\n".join(lines)


#: What the training curves read: a run's ``history.csv``.
HISTORY_TABLE = "a run's history.csv (training writes RUN/history.csv)"


def plot_training_curves(history_csv: str | os.PathLike, out_png: str | os.PathLike,
                         scheme: str | None = None) -> Path:
    """nnU-Net-style progress plot from ``history.csv`` (`pipeline.training.monitoring.HISTORY_COLUMNS`).

    Top: training loss (left axis) and validation Dice per region and mean (right axis) by epoch, each region in
    the colours of ``scheme`` (by default the one the run beside the table recorded in its run.json), as the
    evaluation's pictures and the viewers draw it. Bottom: the learning rate by epoch.
    """
    if scheme is None:  # (training passes its own: "auto" reads nothing and draws the BraTS names' colours)
        from pipeline.model.record import read_record

        try:
            scheme = ((read_record(Path(history_csv).parent) or {}).get("ids") or {}).get("label_scheme")
        except UserError:  # an unreadable run.json: the BraTS names' colours
            scheme = None
    by_column = {dice_name(region): colour for region, colour in scheme_colours(scheme).items()}
    rows = read_table(history_csv, ("epoch", "loss", "lr"), HISTORY_TABLE)
    if not rows:
        raise UserError(f"{history_csv} has no epoch yet: nothing to plot")

    def _floats(rows: list[dict[str, str]], key: str) -> np.ndarray:
        return np.array(column_numbers(rows, key, history_csv))

    epoch = _floats(rows, "epoch")
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(epoch, _floats(rows, "loss"), color="black", label="training loss")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    regions = [(k, k[len("val_dice_"):].upper(), "-") for k in rows[0] if k.startswith("val_dice_")]
    for i, (key, label, style) in enumerate((*regions, ("val_mean_dice", "mean", "--"))):  # history.csv's regions
        values = _floats(rows, key)
        keep = ~np.isnan(values)
        if keep.any():
            colour = "grey" if label == "mean" else by_column.get(key) or region_colour(label, i)
            ax2.plot(epoch[keep], values[keep], style, marker="o", ms=4, mec="black", mew=0.5, color=colour,
                     label=f"Dice {label}")
    ax2.set_ylabel("validation Dice" if ax2.lines else "no validation (--fold all)")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title("training progress")
    ax_lr.plot(epoch, _floats(rows, "lr"), color="grey")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    return save_figure(fig, out_png)


def progress_bar(desc: str, unit: str = "it", output_transform: Callable | None = None):  # noqa: ANN201
    """An ignite ``ProgressBar`` (tqdm: count, rate, ETA) for the iterations of an epoch, or the cases of inference.

    Shown only on an interactive terminal (``disable=None``: tqdm turns itself off when output is redirected,
    so logs and CI stay clean), and only on rank 0.
    """
    from ignite.handlers import ProgressBar

    bar = ProgressBar(persist=False, desc=desc, unit=unit, disable=None if is_main_process() else True)
    if output_transform is None:
        return bar

    class _Bar:  # MONAI calls attach(engine) with no arguments: bind the output transform here (monai_workarounds)
        def attach(self, engine) -> None:  # noqa: ANN001
            bar.attach(engine, output_transform=output_transform)

    return _Bar()


def loss_for_bar(output: object) -> dict[str, float]:
    """``{"loss": value}`` of a trainer iteration, shown beside the training progress bar."""
    return {"loss": _loss_of(output)}
