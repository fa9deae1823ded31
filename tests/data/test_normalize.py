"""The intensity normalisations of the shared preprocessing (`pipeline.data.transforms.NormalizeBraind`), each
against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensityd

from pipeline.core.errors import UserError
from pipeline.data.transforms import NormalizeBraind


@pytest.fixture
def image() -> torch.Tensor:
    """``(4, 12, 10, 8)`` float32: a brain of random intensities, a zero background, a constant last channel."""
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 50.0, size=(4, 12, 10, 8)).astype(np.float32)
    x[:, :3] = 0
    x[3][x[3] != 0] = 7.0
    return torch.from_numpy(x)


def test_zscore_is_monais_normalisation_inside_the_brain(image: torch.Tensor) -> None:
    ours = NormalizeBraind("image", "zscore")({"image": image})["image"]
    monai = NormalizeIntensityd("image", nonzero=True, channel_wise=True)({"image": image})["image"]
    assert ours.dtype == torch.float32 and torch.equal(ours, monai)


def test_percentile_maps_the_brains_5th_and_95th_percentiles_to_0_and_1(image: torch.Tensor) -> None:
    out = NormalizeBraind("image", "percentile")({"image": image})["image"].numpy()
    x = image.numpy().astype(np.float64)
    for c in range(3):
        brain = x[c] != 0
        low, high = np.percentile(x[c][brain], [5, 95])
        np.testing.assert_allclose(out[c][brain], (x[c][brain] - low) / (high - low), rtol=1e-5, atol=1e-6)
        assert np.all(out[c][~brain] == 0)  # the background stays 0
    assert np.all(out[3][x[3] != 0] == 0) and np.isfinite(out).all()  # no spread: only shifted


def test_an_unknown_normalisation_is_refused_naming_the_choices() -> None:
    with pytest.raises(UserError, match="--normalization 'minmax': expected one of zscore, percentile"):
        NormalizeBraind("image", "minmax")
