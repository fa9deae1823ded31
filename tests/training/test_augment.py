"""RandPatchAugmentd: one patch of the ROI size, the label moved with the image through every spatial draw, centred
on the tumour when asked; nnU-Net's intensity augmentation keeps the shape and the channels' statistics sane."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.training.augment import RandPatchAugmentd, bg_contrast, intensity_augment

SHAPE = (30, 26, 20)
ROI = (16, 16, 12)


def _item() -> dict:
    """An image whose first channel equals the label's region (a smooth ramp in [0, 1]), so that any spatial
    transform applied alike leaves them equal; tumour indices of the voxels over 0.9."""
    g = torch.Generator().manual_seed(1)
    ramp = torch.rand(1, *SHAPE, generator=g)
    ramp = torch.nn.functional.avg_pool3d(ramp[None], 5, 1, 2)[0]
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    image = torch.cat([ramp, torch.rand(1, *SHAPE, generator=g)])
    fg = np.flatnonzero(ramp[0].numpy() > 0.9)
    return {"image": image, "label": ramp.clone(), "label_fg_indices": fg, "label_bg_indices": np.arange(3)}


@pytest.mark.parametrize("spatial", [
    {"rotate_prob": 0.0, "scale_prob": 0.0, "flip_prob": 0.0},
    {"rotate_prob": 1.0, "scale_prob": 0.0, "flip_prob": 0.0},
    {"rotate_prob": 0.0, "scale_prob": 1.0, "flip_prob": 1.0},
    {"rotate_prob": 1.0, "scale_prob": 1.0, "flip_prob": 0.5},
], ids=["crop", "rotate", "scale_mirror", "all"])
def test_the_label_moves_with_the_image(spatial: dict) -> None:
    t = RandPatchAugmentd(["image", "label"], ROI, intensity=False, **spatial)
    for seed in range(4):
        t.set_random_state(seed)
        out = t(_item())
        assert tuple(out["image"].shape) == (2, *ROI) and tuple(out["label"].shape) == (1, *ROI)
        torch.testing.assert_close(out["image"][0], out["label"][0], atol=1e-6, rtol=0)
        assert "label_fg_indices" not in out and "label_bg_indices" not in out


def test_a_positive_patch_is_centred_on_tumour() -> None:
    t = RandPatchAugmentd(["image", "label"], ROI, pos=1.0, rotate_prob=0.0, scale_prob=0.0, flip_prob=0.0,
                          intensity=False)
    for seed in range(10):
        t.set_random_state(seed)
        out = t(_item())
        assert float(out["label"].max()) > 0.9  # the drawn tumour voxel is inside (the patch kept in the volume)


def test_a_patch_larger_than_the_volume_is_padded_with_zeros() -> None:
    item = _item()
    t = RandPatchAugmentd(["image", "label"], (40, 30, 24), rotate_prob=0.0, scale_prob=0.0, flip_prob=0.0,
                          intensity=False)
    t.set_random_state(0)
    out = t(item)
    assert tuple(out["label"].shape) == (1, 40, 30, 24)
    assert float(out["label"].sum()) == pytest.approx(float(item["label"].sum()), rel=1e-6)


@pytest.mark.parametrize("per_channel", [False, True], ids=["one_draw", "per_channel"])
def test_intensity_augmentation_changes_a_copy_and_keeps_it_finite(per_channel: bool) -> None:
    x = torch.randn(4, 16, 16, 12, generator=torch.Generator().manual_seed(0))
    original = x.clone()
    changed = 0
    for seed in range(20):
        y = intensity_augment(x, np.random.RandomState(seed), per_channel=per_channel)
        assert y.shape == x.shape and torch.isfinite(y).all()
        changed += not torch.equal(x, y)
    assert torch.equal(x, original)  # the input is never modified in place
    assert changed >= 10  # about 3 in 4 draws apply at least one of the seven


def _channel_spread(y: torch.Tensor) -> float:
    """How far the channels' standard deviations differ (relative): 0 when one draw scaled them all alike."""
    s = y.std(dim=(1, 2, 3))
    return float((s.max() - s.min()) / s.mean())


@pytest.mark.parametrize("per_channel", [False, True], ids=["one_draw", "per_channel"])
def test_per_channel_draws_change_the_contrasts_relative_intensities(per_channel: bool) -> None:
    """Four identical contrasts: one draw for all keeps them alike (noise aside: 10x their spread, so it moves a
    standard deviation by < 0.1 %); nnU-Net's per-channel draws make them differ whenever a draw applies."""
    one = 10 * torch.randn(1, 16, 16, 12, generator=torch.Generator().manual_seed(1))
    x = one.repeat(4, 1, 1, 1)
    spreads = [_channel_spread(intensity_augment(x, np.random.RandomState(seed), per_channel=per_channel))
               for seed in range(60)]
    if per_channel:
        assert sum(s > 0.01 for s in spreads) >= 20
    else:
        assert max(spreads) < 0.01


def test_bg_contrast_draws_half_below_one_whatever_the_range() -> None:
    """batchgeneratorsv2's BGContrast: (0.7, 1.5) gives a factor below 1 half the time, from (0.7, 1), and above 1
    otherwise, from (1, 1.5); a plain uniform draw would fall below 1 in 3 of 8."""
    rng = np.random.RandomState(0)
    draws = np.array([bg_contrast(rng, 0.7, 1.5) for _ in range(4000)])
    assert draws.min() >= 0.7 and draws.max() <= 1.5
    assert abs((draws < 1).mean() - 0.5) < 0.03
    assert abs(draws[draws < 1].mean() - 0.85) < 0.01 and abs(draws[draws >= 1].mean() - 1.25) < 0.01


def test_rand_patch_augment_passes_per_channel_to_the_intensity_draws() -> None:
    image = 10 * torch.randn(1, 24, 24, 24, generator=torch.Generator().manual_seed(2)).repeat(4, 1, 1, 1)
    item = {"image": image, "label": torch.zeros(1, 24, 24, 24)}
    spreads = {}
    for per_channel in (False, True):
        t = RandPatchAugmentd(["image", "label"], (16, 16, 16), rotate_prob=0.0, scale_prob=0.0, flip_prob=0.0,
                              per_channel=per_channel)
        t.set_random_state(0)
        spreads[per_channel] = max(_channel_spread(t(item)["image"]) for _ in range(40))
    assert spreads[False] < 0.01 < spreads[True]
