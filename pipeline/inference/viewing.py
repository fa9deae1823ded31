"""Looking at the result: colour tables so that 3D Slicer and ITK-SNAP show each label by its name.

Inference writes, beside the segmentations, ``labels.ctbl`` (a 3D Slicer colour table: ``value name R G B A``) and
``labels_itksnap.txt`` (an ITK-SNAP label description), both from the dataset's description and the colours of
`pipeline.data.colours` (the pictures' too). In Slicer: load the input image and ``<case>.nii.gz`` as a
segmentation, then the colour table (Data > Add data, or drag the ``.ctbl``), and pick it in Segmentations >
Import/Export; in ITK-SNAP: File > Open main image, Segmentation > Open segmentation, Segmentation > Import label
descriptions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.core.files import atomic_write_text
from pipeline.data.colours import colour_table
from pipeline.data.labels import Description, describe


def slicer_table(scheme: str | Description) -> str:
    """A 3D Slicer colour table (``.ctbl``): ``value name R G B A`` lines, background first."""
    lines = ["# 3D Slicer colour table: value name R G B A", "0 background 0 0 0 0"]
    lines += [f"{v} {name.replace(' ', '_')} {r} {g} {b} 255" for v, name, (r, g, b) in colour_table(scheme)]
    return "\n".join(lines) + "\n"


def itksnap_table(scheme: str | Description) -> str:
    """An ITK-SNAP label description file (Segmentation > Import label descriptions)."""
    lines = ["################################################", "# ITK-SnAP Label Description File",
             "# Columns = Index R G B A VIS MSH LABEL", "################################################",
             '    0     0    0    0        0  0  0    "Clear Label"']
    lines += [f'{v:>5} {r:>5} {g:>4} {b:>4}        1  1  1    "{name}"' for v, name, (r, g, b) in colour_table(scheme)]
    return "\n".join(lines) + "\n"


#: The viewer tables inference writes beside the segmentations, by file name.
VIEWER_TABLES = {"labels.ctbl": slicer_table, "labels_itksnap.txt": itksnap_table}


def write_viewer_tables(output_dir: str | os.PathLike, scheme: str | Description,
                        keep: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Write ``labels.ctbl`` and ``labels_itksnap.txt`` into ``output_dir`` (see the module docstring), but for
    those in ``keep`` (a user's edit in inference's own folder, `edited_tables`)."""
    out, kept = Path(output_dir), {Path(k).name for k in keep}
    return [atomic_write_text(out / name, table(scheme)) for name, table in VIEWER_TABLES.items() if name not in kept]


def edited_tables(output_dir: str | os.PathLike, scheme: str | Description,
                  written: Iterable[str] = ()) -> list[Path]:
    """The viewer tables in ``output_dir`` that inference did not write as they are: their content is neither this
    scheme's table nor that of a scheme the folder's segmentations were written in (``written``, provenance.json's
    names: inference wrote those tables); a user's own or edited table, or an unreadable one."""
    out = Path(output_dir)
    schemes: list[str | Description] = [scheme]
    for name in dict.fromkeys(written):
        try:
            schemes.append(describe(name))
        except Exception:  # noqa: BLE001 - a scheme no longer known here (a moved dataset.json): no table of it
            continue
    found = []
    for name, table in VIEWER_TABLES.items():
        try:
            if (out / name).read_text(encoding="utf-8") not in {table(s) for s in schemes}:
                found.append(out / name)
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError):
            found.append(out / name)
    return found
