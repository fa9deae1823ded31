"""One evaluation entry for both protocols: ``legacy`` (ours, `pipeline.evaluation.regions`) and ``official``
(the BraTS package, `pipeline.evaluation.official`), their tables and their pictures."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.evaluation.official import evaluate_official, format_official_table
from pipeline.evaluation.plots import plot_evaluation
from pipeline.evaluation.regions import evaluate_folders, format_table

logger = logging.getLogger(__name__)


#: Evaluation protocols of the ``evaluate`` command and of ``evaluate.yaml``.
PROTOCOLS: tuple[str, ...] = ("legacy", "official")


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; expected {' or '.join(PROTOCOLS)} (legacy: our ET/TC/WT "
                        "Dice and HD95; official: the BraTS package's lesion-wise metrics)")


def evaluate(protocol: str, pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
             scheme: str = "auto", cases: Sequence[str] | None = None, challenge: str | None = None, jobs: int = 1,
             out_option: str = "--eval_dir", allow_mixed: bool | str = False) -> dict:
    """The evaluation of ``protocol``: ``legacy`` (`pipeline.evaluation.regions.evaluate_folders`: metrics.csv,
    summary.json) or ``official`` (`evaluate_official`: official.csv, official_summary.json)."""
    check_protocol(protocol)
    if protocol == "legacy":
        if challenge is not None:
            raise UserError(f"challenge {challenge!r} applies to the official protocol only: pass --protocol official "
                            "(bundle: --protocol official), or leave the challenge out")
        return evaluate_folders(pred_dir, ref_dir, out_dir, scheme=scheme, cases=cases, out_option=out_option,
                                allow_mixed=allow_mixed)
    return evaluate_official(pred_dir, ref_dir, out_dir, scheme=scheme, challenge=challenge, jobs=jobs, cases=cases,
                             out_option=out_option, allow_mixed=allow_mixed)


def format_summary(summary: dict) -> str:
    """The table of either protocol's summary (`format_official_table` or the legacy ``format_table``)."""
    return format_official_table(summary) if summary.get("protocol") == "official" else format_table(summary)


def plots(protocol: str, eval_dir: str | os.PathLike, pred_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
          scheme: str = "auto") -> list[Path]:
    """The legacy evaluation's pictures (`pipeline.evaluation.plots.plot_evaluation`); none for the official protocol,
    whose table has no per-region Dice of ours to rank cases by (run the legacy protocol for pictures)."""
    check_protocol(protocol)
    if protocol == "official":
        logger.info("no pictures for --protocol official; the legacy protocol draws them (metrics.csv)")
        return []

    return plot_evaluation(eval_dir, pred_dir, dataset_dir, scheme=scheme)
