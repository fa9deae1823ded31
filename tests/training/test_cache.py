"""The training cache: every cached image holds the description's channels (`check_cached_channels`)."""

from __future__ import annotations

import pytest
import torch
from monai.data import CacheDataset
from monai.transforms import Compose, MapTransform

from pipeline.core.errors import UserError
from pipeline.training.cache import cached_dataset, check_cached_channels


class _Channels(MapTransform):
    """A deterministic preprocessing: ``image`` ``(C, 4, 4, 4)`` with the item's ``channels``."""

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        d["image"] = torch.full((int(d["channels"]), 4, 4, 4), float(d["value"]))
        return d


def _dataset(channels: list[int]) -> CacheDataset:
    items = [{"case": f"case{i}", "channels": c, "value": i} for i, c in enumerate(channels)]
    return cached_dataset(items, Compose([_Channels(keys="image")]), num_workers=1)


def test_a_cached_image_with_the_wrong_channels_is_preprocessed_again_alone() -> None:
    dataset = _dataset([4, 4, 4])
    dataset._cache[1] = {**dataset._cache[1], "image": dataset._cache[1]["image"][:1]}  # what the race left
    assert check_cached_channels(dataset, 4) == ["case1"]
    assert [int(item["image"].shape[0]) for item in dataset._cache] == [4, 4, 4]
    assert torch.equal(dataset[1]["image"], torch.full((4, 4, 4, 4), 1.0))


def test_an_image_that_preprocesses_to_other_channels_refuses_the_run_naming_the_case() -> None:
    dataset = _dataset([4, 1, 4])
    with pytest.raises(UserError, match="case case1: its image preprocesses to 1 channel"):
        check_cached_channels(dataset, 4)


@pytest.mark.parametrize("stage", ["train", "validate"])
def test_training_checks_both_caches_before_it_runs(stage: str) -> None:
    import yaml

    from tests.helpers import REPO

    steps = yaml.safe_load((REPO / "bundle/configs/train.yaml").read_text())["training"]
    check = f"$pipeline.training.cache.check_cached_channels(@{stage}#dataset, len(@channels))"
    assert check in steps and steps.index(check) < steps.index("$@train#trainer.run()")
