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


#: The mark every PNG this package draws carries (a ``tEXt`` chunk ``Source``): by it a picture of ours, drawn
#: again in its place, is told from a user's file of the same name (`drawn_here`).
PNG_MARK = ("Source", "brats-pipeline")


def drawn_here(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG this package drew (`PNG_MARK` among its text chunks, read before its pixels)."""
    key, value = (x.encode("latin-1") for x in PNG_MARK)
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            while header := f.read(8):
                if len(header) < 8:
                    return False
                length, kind = int.from_bytes(header[:4], "big"), header[4:]
                if kind in (b"IDAT", b"IEND"):
                    return False
                body = f.read(length)
                f.seek(4, os.SEEK_CUR)  # its CRC
                if kind == b"tEXt" and body == key + b"\0" + value:
                    return True
    except OSError:
        return False
    return False


def save_figure(fig: plt.Figure, out: str | os.PathLike, dpi: int = 100) -> Path:
    """``fig`` as ``out`` (its suffix, e.g. ``.png``, chooses the format), written whole or not at all; a PNG
    carries `PNG_MARK`."""
    out = Path(out)
    formats = fig.canvas.get_supported_filetypes()
    fmt = out.suffix[1:].lower()
    if fmt not in formats:
        plt.close(fig)
        raise UserError(f"{out}: a picture is written as one of {', '.join(sorted(formats))} (the file's suffix "
                        "chooses); pass a file name ending in .png, say")
    metadata = dict([PNG_MARK]) if fmt == "png" else None
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt, metadata=metadata),
                     durable=False)
    finally:
        plt.close(fig)
    return out
