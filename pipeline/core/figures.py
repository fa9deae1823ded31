"""Pictures: matplotlib's non-interactive Agg backend, PNGs written whole; region colours come from
`pipeline.data.colours` (the viewers' table)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write  # noqa: E402


def region_colour(region: str, index: int = 0, colours: dict[str, str] | None = None) -> str:
    """The colour of a region: from ``colours`` (`pipeline.data.colours.region_colours`, the viewers' table); for
    ``label_<v>`` (the ``labels`` scheme) a colour of ``v`` alone (tab20's, 20 values apart), the same in every
    picture whatever other values a case holds; else matplotlib's tab10 by ``index``."""
    if colours and region in colours:
        return colours[region]
    cycle = plt.get_cmap("tab10").colors
    value = re.fullmatch(r"label_(\d+)", region)
    if value:  # tab20's dark colours for 0-9, its light ones for 10-19: values 0-19 apart in one picture
        v, pairs = int(value.group(1)), plt.get_cmap("tab20").colors
        return matplotlib.colors.to_hex(pairs[(2 * (v % 10) + (v // 10) % 2) % len(pairs)])
    return matplotlib.colors.to_hex(cycle[(index + 3) % len(cycle)])


def save_figure(fig: plt.Figure, out: str | os.PathLike, dpi: int = 100) -> Path:
    """``fig`` as ``out`` (its suffix, e.g. ``.png``, chooses the format), written whole or not at all."""
    out = Path(out)
    formats = fig.canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        plt.close(fig)
        raise UserError(f"{out}: a picture is written as one of {', '.join(sorted(formats))} (the file's suffix "
                        "chooses); pass a file name ending in .png, say")
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=out.suffix[1:]),
                     durable=False)
    finally:
        plt.close(fig)
    return out
