"""Fold ensembles: the mean probability of the folds' networks, loaded from one combined checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.inference.ensemble import ProbabilityEnsemble, ensemble_of, fold_checkpoint, write_ensemble_checkpoint


def test_ensemble_is_the_mean_probability_of_its_members() -> None:
    torch.manual_seed(0)
    nets = [torch.nn.Conv3d(4, 3, 1) for _ in range(3)]
    x = torch.randn(2, 4, 3, 3, 3)
    with torch.no_grad():
        got = torch.sigmoid(ProbabilityEnsemble(nets)(x))
        expected = sum(torch.sigmoid(n(x)) for n in nets) / 3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_ensemble_checkpoint_of_the_folds_loads_each_fold_into_its_member(tmp_path: Path) -> None:
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
    with pytest.raises(UserError, match=r"fold 3: .*fold_3/models/model.pt"):
        write_ensemble_checkpoint(tmp_path, [3])


def test_an_ensemble_of_folds_trained_with_different_networks_is_refused(tmp_path: Path) -> None:
    import json

    for f, channels in ((0, [8, 16]), (1, [16, 32])):
        ckpt = fold_checkpoint(tmp_path, f)
        ckpt.parent.mkdir(parents=True)
        torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), ckpt)
        record = {"network": {"_target_": "UNet", "channels": channels}}
        (ckpt.parent.parent / "run.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"fold 1 .* another network than fold 0 \(channels: \[8, 16\] -> \[16, 32\]"):
        write_ensemble_checkpoint(tmp_path, [0, 1])
    assert not (tmp_path / "ensemble").exists()
