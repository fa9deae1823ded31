"""TTA, post-processing and fold ensembles, each against an independent computation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import SimpleInferer
from monai.transforms import RemoveSmallObjectsd

from pipeline.errors import UserError
from pipeline.postprocessing import (
    MirrorInferer,
    ProbabilityEnsemble,
    SmallEnhancingToNecrosisd,
    ensemble_of,
    fold_checkpoint,
    probabilities_to_logits,
    with_tta,
)


class _Asymmetric(torch.nn.Module):
    """A network whose output depends on position, so flipping matters: x * ramp along every axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, d = x.shape[2:]
        ramp = (torch.arange(h).view(h, 1, 1) + 2 * torch.arange(w).view(1, w, 1) + 3 * torch.arange(d).view(1, 1, d))
        return (x[:, :3] * ramp / 10.0 - 1.0).float()


def test_mirror_tta_is_the_mean_probability_over_the_eight_flips() -> None:
    x = torch.rand(1, 4, 5, 6, 7)
    net = _Asymmetric()
    got = torch.sigmoid(MirrorInferer(SimpleInferer())(x, net))
    expected = torch.zeros_like(got)
    combos = [c for r in range(4) for c in itertools.combinations((2, 3, 4), r)]
    for dims in combos:  # independent: flip, predict, flip back, average probabilities
        xf = torch.flip(x, dims) if dims else x
        p = torch.sigmoid(net(xf))
        expected += torch.flip(p, dims) if dims else p
    expected /= len(combos)
    assert len(combos) == 8
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_tta_of_a_flip_invariant_network_changes_nothing() -> None:
    x = torch.rand(1, 4, 4, 4, 4)
    net = torch.nn.Conv3d(4, 3, 1)  # pointwise: commutes with flips
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(MirrorInferer(SimpleInferer())(x, net)), torch.sigmoid(net(x)),
                                   atol=1e-5, rtol=1e-5)


def test_with_tta_false_keeps_the_inferer() -> None:
    inferer = SimpleInferer()
    assert with_tta(inferer, False) is inferer and isinstance(with_tta(inferer, True), MirrorInferer)


def _regions(et_voxels: int) -> torch.Tensor:
    r = torch.zeros(3, 10, 10, 10)
    r[1, 2:8, 2:8, 2:8] = 1  # WT
    r[0, 3:7, 3:7, 3:7] = 1  # TC
    r[2].view(-1)[torch.nonzero(r[0].view(-1)).squeeze(1)[:et_voxels]] = 1  # ET inside TC
    return r


@pytest.mark.parametrize(
    ("et_voxels", "min_voxels", "et_kept"),
    [
        pytest.param(10, 20, False, id="small_et_becomes_necrosis"),
        pytest.param(30, 20, True, id="large_et_is_kept"),
        pytest.param(10, 0, True, id="zero_threshold_is_off"),
        pytest.param(0, 20, True, id="no_et_stays_empty"),
    ],
)
def test_small_enhancing_tumour_is_relabelled_as_necrosis(et_voxels: int, min_voxels: int, et_kept: bool) -> None:
    r = _regions(et_voxels)
    out = SmallEnhancingToNecrosisd("pred", min_voxels)({"pred": r})["pred"]
    assert int(out[2].sum()) == (et_voxels if et_kept else 0)
    assert torch.equal(out[0], r[0]) and torch.equal(out[1], r[1])  # the voxels stay tumour core and WT
    from pipeline.labels import regions_to_labels

    labels = regions_to_labels(out.numpy() > 0.5)
    assert int((labels == 4).sum()) == (et_voxels if et_kept else 0)


def test_component_removal_drops_small_islands_per_region() -> None:
    r = torch.zeros(3, 12, 12, 12)
    r[1, 1:6, 1:6, 1:6] = 1  # a 125-voxel WT component
    r[1, 10, 10, 10] = 1     # a 1-voxel WT island
    r[2, 10, 1, 1] = 1       # a 1-voxel ET island
    out = RemoveSmallObjectsd("pred", min_size=5, connectivity=3, independent_channels=True)({"pred": r})["pred"]
    assert int(out[1].sum()) == 125 and int(out[2].sum()) == 0


def test_ensemble_is_the_mean_probability_of_its_members() -> None:
    torch.manual_seed(0)
    nets = [torch.nn.Conv3d(4, 3, 1) for _ in range(3)]
    x = torch.randn(2, 4, 3, 3, 3)
    with torch.no_grad():
        got = torch.sigmoid(ProbabilityEnsemble(nets)(x))
        expected = sum(torch.sigmoid(n(x)) for n in nets) / 3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_ensemble_checkpoint_of_the_folds_loads_each_fold_into_its_member(tmp_path: Path) -> None:
    from pipeline.postprocessing import write_ensemble_checkpoint

    template = torch.nn.Conv3d(4, 3, 1)
    folds = [0, 2]
    members = [torch.nn.Conv3d(4, 3, 1) for _ in folds]
    for f, m in zip(folds, members, strict=True):
        fold_checkpoint(tmp_path, f).parent.mkdir(parents=True)
        torch.save(m.state_dict(), fold_checkpoint(tmp_path, f))
    ensemble = ensemble_of(template, len(folds))
    ensemble.load_state_dict(torch.load(write_ensemble_checkpoint(tmp_path, folds), weights_only=True))
    for i, m in enumerate(members):
        assert torch.equal(ensemble.networks[i].weight, m.weight)


def test_ensemble_names_the_fold_without_a_checkpoint(tmp_path: Path) -> None:
    from pipeline.postprocessing import write_ensemble_checkpoint

    with pytest.raises(UserError, match=r"fold 3: .*fold_3/models/model.pt"):
        write_ensemble_checkpoint(tmp_path, [3])


def test_logits_round_trip_probabilities() -> None:
    p = torch.tensor([0.01, 0.5, 0.99])
    torch.testing.assert_close(torch.sigmoid(probabilities_to_logits(p)), p)
    assert np.isfinite(probabilities_to_logits(torch.tensor([0.0, 1.0])).numpy()).all()


def test_an_ensemble_of_folds_trained_with_different_networks_is_refused(tmp_path: Path) -> None:
    import json

    from pipeline.postprocessing import write_ensemble_checkpoint

    for f, channels in ((0, [8, 16]), (1, [16, 32])):
        ckpt = fold_checkpoint(tmp_path, f)
        ckpt.parent.mkdir(parents=True)
        torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), ckpt)
        record = {"network": {"_target_": "UNet", "channels": channels}}
        (ckpt.parent.parent / "run.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"fold 1 .* another network than fold 0 \(channels: \[8, 16\] -> \[16, 32\]"):
        write_ensemble_checkpoint(tmp_path, [0, 1])
    assert not (tmp_path / "ensemble").exists()
