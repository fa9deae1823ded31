"""The two MONAI transforms that make every dataset layout look the same to the network.

- :class:`SelectChannelsd`: an MSD case is one 4D file in the Decathlon's channel order (FLAIR, T1w, T1gd,
  T2w); its datalist item carries ``channel_index`` (:mod:`pipeline.datasets`), and this transform puts the
  loaded ``(4, H, W, D)`` image in the project's order T1, T1ce, T2, FLAIR (:data:`pipeline.labels.CHANNELS`).
  BraTS items have no ``channel_index``: their 4 files are listed in that order already.
- :class:`LabelsToRegionsd`: a label map ``(1, H, W, D)`` in any label scheme (:data:`pipeline.labels.LABEL_SCHEMES`)
  -> the region channels ``(3, H, W, D)`` bool TC, WT, ET. For ``brats`` and ``brats2023`` it equals MONAI's
  ``ConvertToMultiChannelBasedOnBratsClassesd(et_label=4 or 3)``; that transform hard-codes TC as label 1 | ET,
  which is oedema | ET under MSD's numbering (1 ED, 2 NET, 3 ET), hence this one (a MONAI 1.6.1 workaround,
  :mod:`pipeline.monai_workarounds`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from pipeline.labels import CHANNELS, describe, labels_to_regions


class SelectChannelsd(MapTransform):
    """Reorder (or select) the channels of a loaded image: ``image[channel_index]``, when the item has an index.

    Args:
        keys: the image key(s), loaded channel-first ``(C, H, W, D)``.
        index_key: the item key holding the index (``channel_index``: position in the file of each channel
            of :data:`pipeline.labels.CHANNELS`); it is removed from the item. An item without it is unchanged.

    Raises:
        ValueError: the index does not fit the image (naming the case and the file).
    """

    def __init__(self, keys: KeysCollection, index_key: str = "channel_index", allow_missing_keys: bool = False,
                 ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index_key = index_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        index = d.pop(self.index_key, None)
        if index is None:
            return d
        order = [int(i) for i in (index.tolist() if hasattr(index, "tolist") else index)]
        for key in self.key_iterator(d):
            img = d[key]
            n = int(img.shape[0])
            if len(order) != len(CHANNELS) or not all(0 <= i < n for i in order):
                source = getattr(img, "meta", {}).get("filename_or_obj", key)
                raise ValueError(
                    f"case {d.get('case', '?')}: {source} has {n} channel(s) but {self.index_key} is {order}; "
                    f"expected {len(CHANNELS)} distinct positions below {n} (one per channel {', '.join(CHANNELS)})"
                )
            d[key] = img[order]
        return d


class LabelsToRegionsd(MapTransform):
    """Label map ``(1, H, W, D)`` or ``(H, W, D)`` in ``scheme`` -> regions ``(R, H, W, D)`` bool.

    The regions of the scheme's description (:func:`pipeline.labels.describe`), in its order: for ``brats``,
    ``brats2023`` and ``msd`` TC = NCR | ET, WT = NCR | ED | ET, ET = ET with the scheme's values; ``brats2024``
    WT, TC, ET and RC. Values outside the scheme count as background; ``python -m pipeline check`` reports them.
    """

    def __init__(self, keys: KeysCollection, scheme: str = "brats", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scheme = scheme
        describe(scheme)  # an unknown scheme fails here, when the config is built

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.regions(d[key])
        return d

    def regions(self, label: torch.Tensor) -> torch.Tensor:
        """``(1, H, W, D)``/``(H, W, D)`` -> ``(R, H, W, D)`` bool (a MetaTensor stays one, with its metadata)."""
        if label.ndim == 4 and label.shape[0] == 1:
            label = label[0]
        return labels_to_regions(label, self.scheme)

