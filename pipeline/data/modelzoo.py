"""MONAI model-zoo datalists (``training``/``validation``/``testing``, items without case or fold), read with
their own split: ``validation`` is fold 0, ``training`` fold 1, ``testing`` the cases to segment."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.core.nifti import nifti_stem
from pipeline.data.labels import CHANNELS, REGIONS, untold_prefix
from pipeline.data.layouts import LAYOUTS
from pipeline.data.layouts.brats import named_as, named_split

logger = logging.getLogger(__name__)


#: Top-level keys of a MONAI model-zoo datalist (e.g. ``brats_mri_segmentation``), which carries its own split.
MODEL_ZOO_KEYS: tuple[str, ...] = ("training", "validation", "testing")


#: Fold given to a model-zoo datalist's ``validation`` items (its one split) and to its ``training`` items.
MODEL_ZOO_FOLDS: dict[str, int] = {"validation": 0, "training": 1}


def model_zoo_case_id(item: dict) -> object:
    """The case id of a model-zoo item (it has none): the label's stem without ``_seg``/``-seg``; else, for BraTS
    names, the first image's stem without its contrast suffix (its case folder's name in a BraTS download);
    else the first image's stem."""
    label = item.get("label")
    named = named_split(label) if isinstance(label, (str, os.PathLike)) else None
    if named and named[1] == "seg":
        return named[0]
    image = item.get("image")
    first = image[0] if isinstance(image, list) and image else image
    if not isinstance(first, (str, os.PathLike)):
        return None
    named = named_split(first)
    return named[0] if named else nifti_stem(Path(first).name)


def is_model_zoo(raw: dict) -> bool:
    """Whether a datalist is MONAI model-zoo style: ``validation``/``testing`` keys, or items without case/fold."""
    if "validation" in raw or "testing" in raw:
        return True
    items = raw.get("training")
    return bool(items) and isinstance(items, list) and all(
        isinstance(it, dict) and "case" not in it and "fold" not in it for it in items)


def model_zoo_datalist(path: Path, raw: dict, parts: dict[str, list[dict]]) -> dict:
    items = [it for key in MODEL_ZOO_KEYS for it in parts[key]]
    layouts = {s[1] for it in items for p in it["image"] if (s := named_as(p))}
    if any("channel_index" in it for it in items):
        layouts.add("msd")
    dl: dict = {"name": raw.get("name") or path.stem, "split": "model-zoo"}
    if len(layouts) == 1:  # the file names show the layout, and with it the default numbering
        layout = layouts.pop()
        dl["layout"] = layout
        if not any(untold_prefix(it["case"]) for it in items):  # BraTS-PED names tell no numbering: none recorded
            dl["label_scheme"] = LAYOUTS[layout].label_scheme
    elif raw.get("layout"):
        dl["layout"] = raw["layout"]
    if raw.get("label_scheme"):  # a scheme the datalist declares is the user's word on its numbering
        dl["label_scheme"] = raw["label_scheme"]
    logger.info("datalist %s (MONAI model-zoo): its %d validation case(s) are fold %d, its %d training case(s) fold "
                "%d, its %d testing case(s) test", path, len(parts["validation"]), MODEL_ZOO_FOLDS["validation"],
                len(parts["training"]), MODEL_ZOO_FOLDS["training"], len(parts["testing"]))
    return {**dl, "channels": list(CHANNELS), "regions": list(REGIONS),  # the reader put the images in this order
            "training": [*parts["validation"], *parts["training"]], "test": parts["testing"]}
