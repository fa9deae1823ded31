"""The region loss: soft Dice (per region over the batch) plus BCE, against MONAI's DiceLoss and torch's BCE
computed independently; nnU-Net's ignore voxels add nothing and get no gradient; deep-supervision heads weighted as
nnU-Net weighs them, against MONAI's DeepSupervisionLoss."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DeepSupervisionLoss, DiceLoss, TverskyLoss

from pipeline.data.labels import IGNORE_TARGET
from pipeline.training.losses import DeepSupervised, DiceBCELoss, IgnoreMasked, deep_supervision_weights


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


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft_targets"])
@pytest.mark.parametrize("fn_weight", [0.3, 0.7, 0.9])
def test_a_weight_on_missed_voxels_equals_monais_tversky_loss_plus_bce(soft: bool, fn_weight: float) -> None:
    logits, target = _pair(seed=5, soft=soft)
    ours = DiceBCELoss(fn_weight=fn_weight)(logits, target)
    tversky = TverskyLoss(sigmoid=True, alpha=1 - fn_weight, beta=fn_weight, batch=True, smooth_nr=1e-5,
                          smooth_dr=1e-5)(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(ours, tversky + bce)


def test_the_more_weight_on_missed_voxels_the_more_a_missed_half_costs_against_as_many_false_ones() -> None:
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., :2] = 1  # 32 tumour voxels
    half = torch.full_like(target, -20.0)
    half[..., :1] = 20.0  # 16 found, 16 missed
    extra = torch.full_like(target, -20.0)
    extra[..., :3] = 20.0  # all 32 found, 16 false
    gaps = [float(DiceBCELoss(bce_weight=0.0, fn_weight=w)(half, target) - DiceBCELoss(bce_weight=0.0, fn_weight=w)(
        extra, target)) for w in (0.3, 0.5, 0.7)]
    assert gaps == sorted(gaps) and gaps[0] < 0 < gaps[-1]  # at 0.3 the false voxels cost more, at 0.7 the missed


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


@pytest.mark.parametrize(("heads", "expected"),
                         [(1, [1.0]), (2, [2 / 3, 1 / 3]), (4, [8 / 15, 4 / 15, 2 / 15, 1 / 15])],
                         ids=["one_output", "two_heads", "dynunet_overlay_four"])
def test_deep_supervision_weights_halve_per_head_and_sum_to_one(heads: int, expected: list[float]) -> None:
    assert deep_supervision_weights(heads) == pytest.approx(expected)


@pytest.mark.parametrize("heads", [2, 4])
def test_deep_supervised_loss_equals_monais_over_the_unbound_heads(heads: int) -> None:
    g = torch.Generator().manual_seed(heads)
    stacked = torch.randn(2, heads, 3, 8, 8, 6, generator=g)  # DynUNet in training mode: (B, K, R, H, W, D)
    _, target = _pair(seed=5)
    weights = [0.5**i for i in range(heads)]
    monai = DeepSupervisionLoss(DiceBCELoss(), weights=[w / sum(weights) for w in weights])
    torch.testing.assert_close(DeepSupervised(DiceBCELoss())(stacked, target),
                               monai(list(torch.unbind(stacked, dim=1)), target))


def test_logits_without_heads_pass_to_the_loss_unchanged() -> None:
    logits, target = _pair(seed=6)
    torch.testing.assert_close(DeepSupervised(DiceBCELoss())(logits, target), DiceBCELoss()(logits, target))


def test_ignored_voxels_get_no_gradient_on_any_head() -> None:
    """train.yaml's order, DeepSupervised(IgnoreMasked(loss)): every head sees the ignore mask."""
    _, target = _pair(seed=7)
    marked = target.clone()
    marked[:, :, :3] = IGNORE_TARGET
    stacked = torch.randn(2, 3, 3, 8, 8, 6, generator=torch.Generator().manual_seed(7)).requires_grad_()
    DeepSupervised(IgnoreMasked(DiceBCELoss()))(stacked, marked).backward()
    assert torch.all(stacked.grad[:, :, :, :3] == 0)
    assert all(torch.any(stacked.grad[:, k, :, 3:] != 0) for k in range(3))
