"""Pictures: matplotlib's non-interactive Agg backend, one colour per region in every picture, PNGs written
whole."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.core.files import atomic_write  # noqa: E402

REGION_COLOURS: dict[str, str] = {"WT": "#f2c12e", "TC": "#e0413a", "ET": "#2f7de1"}


def region_colour(region: str, index: int = 0) -> str:
    """The colour of a region in every picture: BraTS's three fixed, any other from matplotlib's tab10."""
    if region in REGION_COLOURS:
        return REGION_COLOURS[region]
    cycle = plt.get_cmap("tab10").colors
    return matplotlib.colors.to_hex(cycle[(index + 3) % len(cycle)])


def save_figure(fig: plt.Figure, out: str | os.PathLike) -> Path:
    """``fig`` as ``out`` (its suffix, e.g. ``.png``, chooses the format), written whole or not at all."""
    out = Path(out)
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight", format=out.suffix[1:]),
                     durable=False)
    finally:
        plt.close(fig)
    return out
