"""The two MONAI transforms that make every layout look the same to the network: `SelectChannelsd` (an MSD 4D
image's channels into the description's order) and `LabelsToRegionsd` (labels ``(1, H, W, D)`` -> regions
``(R, H, W, D)`` bool in the description's order)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from pipeline.data.labels import CHANNELS, describe, labels_to_regions


class SelectChannelsd(MapTransform):
    """Reorder (or select) the channels of a loaded image: ``image[channel_index]``, when the item has an index.

    Args:
        keys: the image key(s), loaded channel-first ``(C, H, W, D)``.
        index_key: the item key holding the index (``channel_index``: position in the file of each channel
            of `pipeline.data.labels.CHANNELS`); it is removed from the item. An item without it is unchanged.

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

    The regions of the scheme's description (`pipeline.data.labels.describe`), in its order: for ``brats``,
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
