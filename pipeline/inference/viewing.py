"""Looking at the result: colour tables so that 3D Slicer and ITK-SNAP show each label by its name.

Inference writes, beside the segmentations, ``labels.ctbl`` (a 3D Slicer colour table: ``value name R G B A``) and
``labels_itksnap.txt`` (an ITK-SNAP label description), both from the dataset's description
(`pipeline.data.labels`). In Slicer: load the input image and ``<case>.nii.gz`` as a segmentation, then the colour
table (Data > Add data, or drag the ``.ctbl``), and pick it in Segmentations > Import/Export; in ITK-SNAP:
File > Open main image, Segmentation > Open segmentation, Segmentation > Import label descriptions.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.core.files import atomic_write_text
from pipeline.data.labels import Description, describe

#: The colours of the BraTS labels in every viewer, by role (the BraTS papers' usual red, green, yellow).
ROLE_COLOURS: dict[str, tuple[int, int, int]] = {
    "NCR": (255, 0, 0), "NETC": (255, 0, 0), "NET": (255, 0, 0), "ED": (0, 200, 0), "SNFH": (0, 200, 0),
    "ET": (255, 255, 0), "RC": (0, 128, 255),
}
_OTHERS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def colour_table(scheme: str | Description) -> list[tuple[int, str, tuple[int, int, int]]]:
    """``[(value, name, (r, g, b))]`` of each label of ``scheme``, background excluded, by value."""
    desc = describe(scheme)
    rows = []
    for i, (name, value) in enumerate(sorted(desc.labels.items(), key=lambda kv: kv[1])):
        rows.append((int(value), name, ROLE_COLOURS.get(name, _OTHERS[i % len(_OTHERS)])))
    return rows


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


def write_viewer_tables(output_dir: str | os.PathLike, scheme: str | Description) -> list[Path]:
    """Write ``labels.ctbl`` and ``labels_itksnap.txt`` into ``output_dir`` (see the module docstring)."""
    out = Path(output_dir)
    return [atomic_write_text(out / "labels.ctbl", slicer_table(scheme)),
            atomic_write_text(out / "labels_itksnap.txt", itksnap_table(scheme))]
