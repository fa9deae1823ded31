"""Colour tables for 3D Slicer and ITK-SNAP follow the dataset description."""

from __future__ import annotations

import re

import pytest

from pipeline.data.labels import BUILTIN, describe
from pipeline.inference.viewing import itksnap_table, slicer_table, write_viewer_tables


@pytest.mark.parametrize("scheme", [pytest.param(name, id=name) for name in BUILTIN])
def test_the_colour_tables_name_every_label_value_of_the_scheme(scheme):
    slicer = [line.split() for line in slicer_table(scheme).splitlines() if not line.startswith("#")]
    assert {int(row[0]) for row in slicer} == describe(scheme).allowed
    assert all(len(row) == 6 and all(0 <= int(c) <= 255 for c in row[2:]) for row in slicer)
    itk = [re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([01])\s+([01])\s+([01])\s+\"(.+)\"", line)
           for line in itksnap_table(scheme).splitlines() if not line.startswith("#")]
    assert all(itk) and {int(m.group(1)) for m in itk} == describe(scheme).allowed


def test_the_resection_cavity_has_its_own_name_and_colour():
    rows = {int(r[0]): r for r in (line.split() for line in slicer_table("brats2024").splitlines()[1:])}
    assert rows[4][1] == "RC" and rows[4][2:5] != rows[3][2:5]


def test_inference_writes_the_tables_beside_the_segmentations(tmp_path):
    paths = write_viewer_tables(tmp_path / "seg", "brats")
    assert sorted(p.name for p in paths) == ["labels.ctbl", "labels_itksnap.txt"]
    assert "4 ET 255 255 0 255" in (tmp_path / "seg" / "labels.ctbl").read_text()
