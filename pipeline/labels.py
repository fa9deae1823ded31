"""The one table of channel orders, label numbering and tumour regions used everywhere in the project.

Channel order (the 4 input channels of every image array, ``(4, H, W, D)`` float32):
    0 T1, 1 T1ce (T1c, T1gd), 2 T2 (T2w), 3 FLAIR (T2f).
This order is recorded in the datalist and in ``bundle/configs/metadata.json``.

Label numbering of a segmentation file (``(H, W, D)`` uint8), by scheme:
    ``brats``      BraTS 2018-2021: 0 background, 1 NCR (necrotic core), 2 ED (oedema), 4 ET (enhancing tumour)
    ``brats2023``  BraTS 2023 and later: 1 NCR, 2 ED, 3 ET
    ``msd``        Medical Segmentation Decathlon Task01_BrainTumour: 1 ED (oedema), 2 NET (non-enhancing tumour),
                   3 ET. Its NET plays the part of BraTS's NCR (the non-enhancing core), so it is stored as "NCR":
                   TC = 2 | 3, WT = 1 | 2 | 3, ET = 3, and segmentations of MSD data are written in MSD numbering.

Regions (the 3 network output channels, sigmoid, ``(3, H, W, D)``) in MONAI's order, as made by
``monai.transforms.ConvertToMultiChannelBasedOnBratsClassesd``:
    0 TC tumour core = NCR + ET, 1 WT whole tumour = NCR + ED + ET, 2 ET enhancing tumour.
ET lies within TC, which lies within WT.
"""

from __future__ import annotations

import numpy as np
import torch

#: Input channel names, in the order the network sees them.
CHANNELS: tuple[str, ...] = ("T1", "T1ce", "T2", "FLAIR")

#: Network output channels, MONAI's ``ConvertToMultiChannelBasedOnBratsClasses`` order.
REGIONS: tuple[str, ...] = ("TC", "WT", "ET")

#: Label value of each tumour class, per labelling scheme.
LABEL_SCHEMES: dict[str, dict[str, int]] = {
    "brats": {"NCR": 1, "ED": 2, "ET": 4},
    "brats2023": {"NCR": 1, "ED": 2, "ET": 3},
    "msd": {"NCR": 2, "ED": 1, "ET": 3},  # MSD Task01: 1 oedema, 2 non-enhancing tumour (as NCR), 3 enhancing
}


def scheme_labels(scheme: str) -> dict[str, int]:
    """Return ``{"NCR": ..., "ED": ..., "ET": ...}`` for ``scheme``; a clear error for an unknown one."""
    try:
        return LABEL_SCHEMES[scheme]
    except KeyError:
        raise ValueError(
            f"unknown label scheme {scheme!r}; expected one of {sorted(LABEL_SCHEMES)} "
            "(brats: BraTS 2018-2021 with ET=4, brats2023: BraTS 2023+ with ET=3, "
            "msd: Decathlon Task01 with 1 ED, 2 NET, 3 ET)"
        ) from None


def allowed_labels(scheme: str) -> set[int]:
    """The label values a segmentation may hold under ``scheme``, background 0 included."""
    return {0, *scheme_labels(scheme).values()}


def labels_to_regions(label: np.ndarray | torch.Tensor, scheme: str = "brats") -> np.ndarray | torch.Tensor:
    """Labels ``(H, W, D)`` (any integer dtype) in ``scheme`` -> regions ``(3, H, W, D)`` bool: TC, WT, ET.

    TC = NCR | ET, WT = NCR | ED | ET, ET = ET with the scheme's values; values outside the scheme count as
    background (as in MONAI's ``ConvertToMultiChannelBasedOnBratsClasses``, whose TC is label 1 | ET and so
    fits ``brats``/``brats2023`` but not ``msd``). A torch tensor (on any device) gives a torch tensor,
    an array an array: the evaluation, the plots and the training transform all read labels through here.
    """
    lab = scheme_labels(scheme)
    ncr, ed, et = (label == lab["NCR"]), (label == lab["ED"]), (label == lab["ET"])
    stack = torch.stack if isinstance(label, torch.Tensor) else np.stack
    return stack([ncr | et, ncr | ed | et, et])


def regions_to_labels(regions: np.ndarray, scheme: str = "brats") -> np.ndarray:
    """Binary regions ``(3, ...)`` (TC, WT, ET; bool or 0/1) -> BraTS labels ``(...)`` uint8.

    The BraTS convention: every WT voxel is oedema (2), TC overwrites it with necrosis (1) and ET
    overwrites both with enhancing tumour (4, or 3 under ``brats2023``; under ``msd`` oedema is 1, the core 2 and
    ET 3). So ET wins over TC over WT,
    and a voxel that the network calls TC or ET but not WT is still labelled (the regions need not nest).
    """
    if regions.shape[0] != len(REGIONS):
        raise ValueError(f"expected {len(REGIONS)} region channels {REGIONS}, got shape {tuple(regions.shape)}")
    lab = scheme_labels(scheme)
    tc, wt, et = (np.asarray(regions[i]).astype(bool) for i in range(3))
    out = np.zeros(tc.shape, dtype=np.uint8)
    out[wt] = lab["ED"]
    out[tc] = lab["NCR"]
    out[et] = lab["ET"]
    return out
