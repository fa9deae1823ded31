"""The region loss: soft Dice (per region over the batch) plus BCE, against MONAI's DiceLoss and torch's BCE
computed independently; nnU-Net's ignore voxels add nothing and get no gradient."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss

from pipeline.data.labels import IGNORE_TARGET
from pipeline.training.losses import DiceBCELoss, IgnoreMasked


def _pair(seed: int = 0, soft: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 8, 8, 6, generator=g)
    target = torch.rand(2, 3, 8, 8, 6, generator=g)
    return logits, (target if soft else (target > 0.6).float())


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft_targets"])
@pytest.mark.parametrize(("dice_weight", "bce_weight"), [(1.0, 1.0), (1.0, 0.0), (0.5, 2.0)])
def test_dice_bce_equals_monai_dice_plus_torch_bce(soft: bool, dice_weight: float, bce_weight: float) -> None:
    logits, target = _pair(soft=soft)
    ours = DiceBCELoss(dice_weight, bce_weight)(logits, target)
    dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(ours, dice_weight * dice + bce_weight * bce)


def test_a_confident_correct_prediction_costs_almost_nothing() -> None:
    _, target = _pair()
    assert float(DiceBCELoss()(40 * (2 * target - 1), target)) < 1e-4


def test_shapes_that_differ_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        DiceBCELoss()(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 2, 4, 4, 4))


def test_ignored_voxels_add_nothing_and_get_no_gradient() -> None:
    logits, target = _pair(seed=3)
    ignored = torch.zeros_like(target, dtype=torch.bool)
    ignored[:, :, :4] = True
    marked = torch.where(ignored, torch.full_like(target, IGNORE_TARGET), target)
    assert IGNORE_TARGET > 1

    logits = logits.requires_grad_()
    loss = IgnoreMasked(DiceBCELoss(bce_weight=0.0))(logits, marked)
    loss.backward()
    assert torch.all(logits.grad[ignored] == 0) and torch.any(logits.grad[~ignored] != 0)
    # the same Dice as on the kept voxels alone
    kept = (slice(None), slice(None), slice(4, None))
    torch.testing.assert_close(loss, DiceBCELoss(bce_weight=0.0)(logits[kept], target[kept]))


def test_targets_without_ignore_pass_unchanged() -> None:
    logits, target = _pair(seed=4)
    torch.testing.assert_close(IgnoreMasked(DiceBCELoss())(logits, target), DiceBCELoss()(logits, target))
