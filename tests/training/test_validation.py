"""Validation Dice: each region's handler reads its own channel of the decollated predictions and labels."""

from __future__ import annotations

import pytest
import torch

from pipeline.training.validation import region_output_transform


@pytest.mark.parametrize(("region", "channel"), [("TC", 0), ("WT", 1), ("ET", 2)])
def test_region_output_transform_picks_the_region_channel(region: str, channel: int) -> None:
    pred = torch.arange(3).view(3, 1, 1, 1).float()
    preds, labels = region_output_transform(region)([{"pred": pred, "label": pred + 10}])
    assert preds[0].item() == channel and labels[0].item() == channel + 10
