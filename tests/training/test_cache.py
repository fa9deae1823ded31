"""pipeline.training.cache: the on-disk cache's key describes what the cached tensors depend on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.data.synthetic import nnunet_dataset_json
from pipeline.data.transforms import LabelsToRegionsd
from pipeline.training.cache import transform_hash


def _edit_channels(meta: dict) -> None:
    names = meta["channel_names"]
    names["0"], names["1"] = names["1"], names["0"]


def _edit_ignore(meta: dict) -> None:
    meta["labels"]["ignore"] = 4


@pytest.mark.parametrize("edit", [_edit_channels, _edit_ignore], ids=["channel_names_swapped", "ignore_label_added"])
def test_an_edited_dataset_json_changes_the_cache_key_of_its_regions(tmp_path: Path, edit) -> None:
    """The key hashed the scheme's name (the dataset.json's path) only: an edited dataset.json reused the targets
    cached under the old definition."""
    path = tmp_path / "dataset.json"
    meta = nnunet_dataset_json()
    path.write_text(json.dumps(meta))
    before = transform_hash([LabelsToRegionsd("label", f"nnunet:{path}")])
    edit(meta)
    path.write_text(json.dumps(meta))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later modification time
    after = transform_hash([LabelsToRegionsd("label", f"nnunet:{path}")])
    assert before != after
    assert transform_hash([LabelsToRegionsd("label", f"nnunet:{path}")]) == after  # and stable
