"""ResampleToSpacingd: area averaging to a coarser voxel, the affine following the grid, and the inverse back onto
the input's grid (how a budget model's prediction returns to the case's voxels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import FgBgToIndicesd

from pipeline.core.errors import UserError
from pipeline.data.labels import IGNORE_TARGET
from pipeline.data.transforms import ResampleToSpacingd, TumourIndicesd
from tests.helpers import parse_bundle


def _volume(shape: tuple[int, int, int], pixdim: tuple[float, float, float], channels: int = 2) -> MetaTensor:
    affine = torch.diag(torch.tensor([*pixdim, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-10.0, 5.0, 2.5], dtype=torch.float64)
    x = torch.rand(channels, *shape, generator=torch.Generator().manual_seed(0))
    return MetaTensor(x, affine=affine)


@pytest.mark.parametrize(("shape", "pixdim", "spacing", "expected"), [
    ((24, 20, 16), (1.0, 1.0, 1.0), 2.0, (12, 10, 8)),
    ((24, 20, 16), (1.0, 1.0, 1.0), 1.5, (16, 13, 11)),
    ((24, 20, 12), (0.5, 0.5, 1.5), 2.0, (6, 5, 9)),  # anisotropic, as BraTS-MET
    ((24, 20, 6), (1.0, 1.0, 3.0), 2.0, (12, 10, 9)),  # thick slices: that axis upsampled linearly
])
def test_resampling_reaches_the_spacing_with_the_affine_following(shape: tuple, pixdim: tuple, spacing: float,
                                                                   expected: tuple) -> None:
    img = _volume(shape, pixdim)
    out = ResampleToSpacingd("image", spacing)({"image": img})["image"]
    assert tuple(out.shape[1:]) == expected and out.dtype == torch.float32
    # the grids share their outer corners: the world position of the outer corner of voxel 0 is unchanged
    corner = np.array([-0.5, -0.5, -0.5, 1.0])
    np.testing.assert_allclose((out.affine.numpy() @ corner)[:3], (img.affine.numpy() @ corner)[:3], atol=1e-9)
    far = np.array([*(np.array(expected) - 0.5), 1.0])
    np.testing.assert_allclose((out.affine.numpy() @ far)[:3],
                               (img.affine.numpy() @ np.array([*(np.array(shape) - 0.5), 1.0]))[:3], atol=1e-9)


def test_area_averaging_keeps_a_region_as_the_fraction_it_covers() -> None:
    label = torch.zeros(1, 8, 8, 8)
    label[0, 0, 0, 0] = 1.0  # one voxel of a thin rim: an eighth of a 2 mm voxel, not lost between samples
    label[0, 4:6, 4:6, 4:6] = 1.0
    out = ResampleToSpacingd("label", 2.0)({"label": MetaTensor(label)})["label"]
    assert out[0, 0, 0, 0] == pytest.approx(1 / 8)
    assert out[0, 2, 2, 2] == pytest.approx(1.0)
    assert float(out.sum()) * 8 == pytest.approx(float(label.sum()))


def test_the_inverse_returns_a_prediction_onto_the_input_grid() -> None:
    img = _volume((24, 20, 16), (1.0, 1.0, 1.0), channels=1)
    resample = ResampleToSpacingd("image", 2.0)
    coarse = resample({"image": img})
    back = resample.inverse(coarse)["image"]
    assert tuple(back.shape) == tuple(img.shape)
    np.testing.assert_allclose(back.affine.numpy(), img.affine.numpy(), atol=1e-9)
    smooth = MetaTensor(torch.linspace(0, 1, 24)[None, :, None, None].expand(1, 24, 20, 16).clone(),
                        affine=img.affine)
    back = resample.inverse(resample({"image": smooth}))["image"]
    inner = (slice(None), slice(2, -2))  # a linear ramp survives area down + linear up inside the border
    np.testing.assert_allclose(back[inner].numpy(), smooth[inner].numpy(), atol=1e-6)


def test_no_spacing_leaves_the_volume_as_it_is() -> None:
    img = _volume((10, 9, 8), (1.0, 1.0, 1.0))
    for spacing in (None, "", "none"):
        out = ResampleToSpacingd("image", spacing)({"image": img})["image"]
        assert torch.equal(out.as_tensor(), img.as_tensor())


@pytest.mark.parametrize("spacing", [0, -1.0, [1.0, 2.0]])
def test_a_bad_spacing_is_refused_naming_the_option(spacing: object) -> None:
    with pytest.raises(UserError, match="--spacing"):
        ResampleToSpacingd("image", spacing)


@pytest.mark.parametrize("given, expected", [
    pytest.param(None, None, id="none"), pytest.param("null", None, id="null_text"),
    pytest.param("None", None, id="None_text"), pytest.param("", None, id="empty"),
    pytest.param(2, [2.0, 2.0, 2.0], id="one_number"), pytest.param("2", [2.0, 2.0, 2.0], id="number_text"),
    pytest.param([2, 2, 1.5], [2.0, 2.0, 1.5], id="three"),
    pytest.param("[2, 2, 1.5]", [2.0, 2.0, 1.5], id="list_text"),
])
def test_spacing_is_read_one_way_by_the_resampling_the_cache_and_the_run_record(given: object,
                                                                               expected: object) -> None:
    from pipeline.data.transforms import parse_spacing
    from pipeline.model.record import spacing_value
    from pipeline.training.fast import label_cache_dtype

    assert parse_spacing(given) == spacing_value(given) == expected
    assert ResampleToSpacingd(keys="image", spacing=given).spacing == expected
    assert label_cache_dtype(given) == (torch.uint8 if expected is None else torch.float16)


@pytest.mark.parametrize("given", [0, -1, [2, 2], "two", [2, "x", 2]])
def test_a_spacing_that_is_no_voxel_size_is_refused_in_one_line(given: object) -> None:
    from pipeline.data.transforms import parse_spacing

    with pytest.raises(UserError, match="--spacing"):
        parse_spacing(given)


def _ignored_block() -> MetaTensor:
    """Regions ``(3, 16, 16, 16)`` uint8: no tumour, a block of nnU-Net's ignore label (`IGNORE_TARGET`) in one
    corner, a small WT blob elsewhere."""
    from pipeline.data.labels import IGNORE_TARGET

    regions = torch.zeros(3, 16, 16, 16, dtype=torch.uint8)
    regions[:, :7, :7, :7] = IGNORE_TARGET
    regions[1, 10:14, 10:14, 10:14] = 1
    return MetaTensor(regions)


def _through_resample_up(regions: MetaTensor) -> torch.Tensor:
    regions.meta["pixdim"] = [1.0, 1.0, 1.0]
    return ResampleToSpacingd(keys="label", spacing=0.7)({"label": regions})["label"].as_tensor()


def _through_resample_down(regions: MetaTensor) -> torch.Tensor:
    return ResampleToSpacingd(keys="label", spacing=1.5)({"label": regions})["label"].as_tensor()


def _through_rotation(regions: MetaTensor, ignore: bool | None = None) -> torch.Tensor:
    from pipeline.training.augment import RandPatchAugmentd

    t = RandPatchAugmentd(["image", "label"], (16, 16, 16), pos=0.0, rotate_prob=1.0, scale_prob=1.0, flip_prob=0.0,
                          intensity=False, ignore=ignore)
    t.set_random_state(0)
    item = {"image": torch.randn(4, 16, 16, 16), "label": regions.as_tensor().to(torch.float16)}  # as cached
    return t(item)["label"]


def _through_rotation_told(regions: MetaTensor) -> torch.Tensor:
    return _through_rotation(regions, ignore=True)  # the budget recipe: told once by the description


@pytest.mark.parametrize("interpolate", [_through_resample_up, _through_resample_down, _through_rotation,
                                         _through_rotation_told],
                         ids=["resample_upsampling", "resample_area_averaging", "patch_rotation_and_zoom",
                              "patch_rotation_told_by_the_description"])
def test_the_ignore_marker_is_never_blended_into_a_target(interpolate) -> None:
    """255 beside background at weight 0.003 made a target of 0.77: false positives in a shell around every
    unannotated area. Each interpolation of label regions now gives the marker or a fraction of the annotated
    part, never a blend of both."""
    from pipeline.data.labels import IGNORE_TARGET

    out = interpolate(_ignored_block()).float()
    marked = out == IGNORE_TARGET
    assert marked.any() and (~marked).any()
    assert bool(((out >= 0) & (out <= 1) | marked).all())  # nothing between 1 and the marker
    assert bool(marked.all(0).eq(marked.any(0)).all())  # a voxel is unannotated in every region or in none
    assert float(out[0][~marked[0]].max()) == 0.0  # no TC anywhere: the ignore block left no TC target behind
    assert float(out[1][~marked[1]].max()) > 0.5  # the WT blob is still there


def test_split_and_join_of_the_ignore_marker_change_nothing_without_an_interpolation() -> None:
    from pipeline.data.labels import join_ignore, split_ignore

    regions = _ignored_block().as_tensor()
    assert torch.equal(join_ignore(split_ignore(regions)), regions.float())


def test_told_there_is_no_ignore_label_the_patch_is_the_plain_interpolation() -> None:
    """Splitting off an ignore mask that is all zero changes nothing: a patch is the same told or not (to float
    rounding: the interpolation runs over one more channel)."""
    regions = _ignored_block()
    regions[regions > 1] = 0
    torch.testing.assert_close(_through_rotation(regions, ignore=True), _through_rotation(regions, ignore=False),
                               atol=1e-6, rtol=0)


def _crop_centres_of_the_preprocessing() -> TumourIndicesd:
    """The crop-centre transform of every training recipe (train.yaml's ``crop_indices``, the budget's and the plain
    recipe's crops read its indices)."""
    parser = parse_bundle("training")
    transform = parser.get_parsed_content("crop_indices")
    assert isinstance(transform, TumourIndicesd)
    return transform


@pytest.mark.parametrize("fraction", [1.0, 0.5], ids=["binary regions", "area-averaged regions"])
def test_unannotated_voxels_are_neither_tumour_nor_background_crop_centres(fraction: float) -> None:
    label = torch.zeros(3, 10, 10, 10)
    label[:, 2:4, 2:4, 2:4] = fraction            # 8 tumour voxels
    label[:, 6:9, 6:9, 6:9] = IGNORE_TARGET       # 27 unannotated
    image = torch.ones(4, 10, 10, 10)
    image[:, 0] = 0                               # 100 voxels outside the brain
    d = _crop_centres_of_the_preprocessing()({"label": label, "image": image})
    fg, bg = (set(torch.as_tensor(d[f"label_{k}_indices"]).tolist()) for k in ("fg", "bg"))
    flat = torch.arange(1000).reshape(10, 10, 10)
    assert fg == set(flat[2:4, 2:4, 2:4].reshape(-1).tolist())
    assert not bg & set(flat[6:9, 6:9, 6:9].reshape(-1).tolist()) and not bg & set(flat[0].reshape(-1).tolist())
    assert len(bg) == 1000 - 8 - 27 - 100
    no_ignore = torch.where(label > 1, torch.zeros_like(label), label)
    plain = FgBgToIndicesd("label", image_key="image", image_threshold=0.0)({"label": no_ignore, "image": image})
    same = _crop_centres_of_the_preprocessing()({"label": no_ignore, "image": image})
    for k in ("fg", "bg"):  # without an ignore label: MONAI's indices exactly
        assert torch.equal(torch.as_tensor(same[f"label_{k}_indices"]), torch.as_tensor(plain[f"label_{k}_indices"]))
