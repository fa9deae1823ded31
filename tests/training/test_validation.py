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


@pytest.mark.parametrize(("regions", "clash"), [
    pytest.param(("TC", "WT", "ET"), None, id="brats"),
    pytest.param(("whole tumor", "tumor core", "enhancing tumor"), None, id="nnunet_dataset137"),
    pytest.param(("Tumor Core", "tumor_core", "ET"), "val_dice_tumor_core", id="one_column_for_two_regions"),
])
def test_each_region_gets_its_own_validation_column(regions: tuple[str, ...], clash: str | None) -> None:
    from pipeline.core.errors import UserError
    from pipeline.training.validation import region_metrics

    if clash:
        with pytest.raises(UserError, match=rf"become the validation column {clash}"):
            region_metrics(regions)
        return
    assert len(region_metrics(regions)) == len(regions)
