"""Parity suite: the article's metrics, ours (``pipeline.evaluation.metrics``) and MONAI's, case by case.

Every difference between the three is named by a test here and listed in the parity table of
``docs/metrics.md``. The article's original functions are copied verbatim below as ``article_*``.
"""

from __future__ import annotations

import math
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import (
    ConfusionMatrixMetric,
    DiceMetric,
    HausdorffDistanceMetric,
    compute_dice,
    compute_hausdorff_distance,
)
from monai.metrics.utils import get_edge_surface_distance
from nibabel.deprecator import ExpiredDeprecationError
from scipy.spatial.distance import cdist

from pipeline.evaluation.metrics import (
    HD95_EMPTY_PENALTY_MM,
    SMOOTH,
    dice,
    hd95,
    load_nii_to_array,
    mask_edges,
    region_metrics,
    sensitivity,
    specificity,
    surface_distances,
)

# ---------------------------------------------------------------------------------------------------------------
# The article's functions, verbatim (only renamed)
# ---------------------------------------------------------------------------------------------------------------


def article_dice(predict, target, val=1.0):
    predict = (predict==val).float()  # noqa: E225
    target = (target==val).float()  # noqa: E225

    smooth = 0.00000001
    batch_num = target.shape[0]
    target = target.view(batch_num, -1)
    predict = predict.view(batch_num, -1)
    intersection = float((target * predict).sum())

    return (2.0 * intersection + smooth) / (float(predict.sum()) + float(target.sum()) + smooth)


def article_sensitivity(predict, target):
    smooth = 0.00000001
    batch_num = target.shape[0]
    target = target.view(batch_num, -1)
    predict = predict.view(batch_num, -1)
    intersection = float((target * predict).sum())

    return (intersection + smooth) / (float(target.sum()) + smooth)


def article_specificity(predict, target):
    smooth = 0.00000001
    batch_num = target.shape[0]
    target = target.view(batch_num, -1)
    predict = predict.view(batch_num, -1)
    target = (target == 0)
    predict = (predict == 0)
    tn = float((target * predict).sum())
    predict = (predict == 0)
    fp = float((target * predict).sum())

    return (tn + smooth) / (tn + fp + smooth)


# ---------------------------------------------------------------------------------------------------------------
# Independent references: plain NumPy / SciPy, and MONAI's metric objects
# ---------------------------------------------------------------------------------------------------------------


def np_counts(p: np.ndarray, t: np.ndarray) -> tuple[int, int, int, int]:
    """``(tp, fp, tn, fn)`` of two arrays, every non-zero value foreground, pooled over everything."""
    p, t = np.asarray(p) != 0, np.asarray(t) != 0
    return int((p & t).sum()), int((p & ~t).sum()), int((~p & ~t).sum()), int((~p & t).sum())


def monai_pooled_sens_spec(p: torch.Tensor, t: torch.Tensor, compute_sample: bool = False) -> tuple[float, float]:
    """MONAI ``ConfusionMatrixMetric`` on ``(B, ...)`` 0/1 tensors, as one channel ``(B, 1, ...)``."""
    m = ConfusionMatrixMetric(metric_name=["sensitivity", "specificity"], include_background=True,
                              compute_sample=compute_sample, reduction="mean")
    m(y_pred=p[:, None].float(), y=t[:, None].float())
    sens, spec = m.aggregate()
    return float(sens.reshape(-1)[0]), float(spec.reshape(-1)[0])


def np_surface(mask: np.ndarray) -> np.ndarray:
    """Coordinates of the voxels of ``mask`` with a face neighbour outside it (outside the image counts as outside).

    Written independently of MONAI/SciPy's erosion: zero-pad, shift by one voxel along each axis both ways.
    """
    m = np.asarray(mask, dtype=bool)
    pad = np.pad(m, 1)
    inner = np.ones_like(m)
    centre = tuple(slice(1, -1) for _ in range(m.ndim))
    for ax in range(m.ndim):
        for shift in (-1, 1):
            inner &= np.roll(pad, shift, axis=ax)[centre]
    return np.argwhere(m & ~inner)


def brute_hd95(a: np.ndarray, b: np.ndarray, spacing, percentile: float = 95.0, pooled: bool = False) -> float:
    """HD95 by brute force: all surface-point pairs (``cdist``, float64), 95th percentile of each direction, max.

    ``pooled=True`` is MedPy's ``hd95``: the percentile of both directions' distances together.
    """
    sa = np_surface(a) * np.asarray(spacing, dtype=np.float64)
    sb = np_surface(b) * np.asarray(spacing, dtype=np.float64)
    d = cdist(sa, sb)
    d_ab, d_ba = d.min(axis=1), d.min(axis=0)
    if pooled:
        return float(np.percentile(np.concatenate([d_ab, d_ba]), percentile))
    return float(max(np.percentile(d_ab, percentile), np.percentile(d_ba, percentile)))


def monai_hd95(a, b, spacing) -> float:
    """MONAI's ``compute_hausdorff_distance(percentile=95)`` of two masks ``(H, W[, D])``, on the full image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on empty masks
        return float(compute_hausdorff_distance(torch.as_tensor(a)[None, None].float(),
                                                torch.as_tensor(b)[None, None].float(),
                                                include_background=True, percentile=95, spacing=spacing))


def blob(shape, centre, radii, seed=0, noise=0.0) -> np.ndarray:
    """An ellipsoid mask, optionally with a few voxels flipped at random (irregular surface)."""
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    m = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0
    if noise:
        m ^= np.random.default_rng(seed).random(shape) < noise
    return m


# ---------------------------------------------------------------------------------------------------------------
# Hypothesis: random batches of shapes, batch sizes and densities
# ---------------------------------------------------------------------------------------------------------------

DENSITIES = st.sampled_from([0.0, 0.02, 0.2, 0.5, 0.9, 1.0])


@st.composite
def binary_batches(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predict, target)``: 0/1 int64 tensors ``(B, *spatial)``, 1 to 3 spatial axes of 1 to 7 voxels."""
    ndim = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 4)), *(draw(st.integers(1, 7)) for _ in range(ndim)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = rng.random(shape) < draw(DENSITIES)
    t = rng.random(shape) < draw(DENSITIES)
    return torch.as_tensor(p.astype(np.int64)), torch.as_tensor(t.astype(np.int64))


@settings(max_examples=25, deadline=None)
@given(binary_batches())
def test_dice_is_the_smoothed_dice_of_the_pooled_batch_and_equals_the_article_on_binary_input(batch) -> None:
    p, t = batch
    tp, fp, _, fn = np_counts(p.numpy(), t.numpy())
    expected = (2 * tp + SMOOTH) / (2 * tp + fp + fn + SMOOTH)
    assert dice(p, t) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert dice(p, t) == pytest.approx(article_dice(p, t), rel=1e-12, abs=1e-15)
    assert isinstance(dice(p, t), float)


@settings(max_examples=25, deadline=None)
@given(binary_batches())
def test_dice_of_one_case_equals_monai_compute_dice_without_ignore_empty(batch) -> None:
    p, t = batch[0][:1], batch[1][:1]
    monai = float(compute_dice(p[:, None].float(), t[:, None].float(), ignore_empty=False))
    assert dice(p, t) == pytest.approx(monai, abs=1e-6)  # MONAI computes in float32, we add 1e-8 smoothing


@settings(max_examples=25, deadline=None)
@given(binary_batches())
def test_global_dice_is_the_size_weighted_mean_of_monais_per_case_dice(batch) -> None:
    p, t = batch
    per_case = compute_dice(p[:, None].float(), t[:, None].float(), ignore_empty=False).reshape(-1).double()
    weights = (p.flatten(1).sum(1) + t.flatten(1).sum(1)).double()
    if weights.sum() == 0:  # every case empty in both: pooled Dice is 1, as MONAI's per-case values
        assert dice(p, t) == pytest.approx(1.0) and bool(torch.all(per_case == 1))
        return
    assert dice(p, t) == pytest.approx(float((per_case * weights).sum() / weights.sum()), abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(binary_batches())
def test_sensitivity_and_specificity_equal_monais_default_pooled_confusion_matrix(batch) -> None:
    p, t = batch
    tp, fp, tn, fn = np_counts(p.numpy(), t.numpy())
    m_sens, m_spec = monai_pooled_sens_spec(p, t)
    assert sensitivity(p, t) == pytest.approx((tp + SMOOTH) / (tp + fn + SMOOTH), rel=1e-12)
    assert specificity(p, t) == pytest.approx((tn + SMOOTH) / (tn + fp + SMOOTH), rel=1e-12)
    assert sensitivity(p, t) == pytest.approx(article_sensitivity(p, t), rel=1e-12)
    assert specificity(p, t) == pytest.approx(article_specificity(p, t), rel=1e-12)
    if tp + fn:
        assert sensitivity(p, t) == pytest.approx(m_sens, abs=1e-6)
    else:  # empty reference: MONAI NaN, article and ours 1
        assert math.isnan(m_sens) and sensitivity(p, t) == 1.0
    if tn + fp:
        assert specificity(p, t) == pytest.approx(m_spec, abs=1e-6)
    else:  # no negative voxel: MONAI NaN, article and ours 1
        assert math.isnan(m_spec) and specificity(p, t) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# A batch of several cases: global Dice against MONAI's per-case mean
# ---------------------------------------------------------------------------------------------------------------


def _case(n: int, size: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D case of ``n`` voxels: reference ``[0, size)``, prediction shifted so that ``overlap`` voxels agree."""
    p, t = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    t[:size] = 1
    p[size - overlap : 2 * size - overlap] = 1
    return p, t


@pytest.mark.parametrize(
    ("cases", "agree"),
    [
        pytest.param([(100, 20, 10)], True, id="one_case"),
        pytest.param([(100, 20, 10), (100, 20, 10), (100, 20, 10)], True, id="identical_cases"),
        pytest.param([(100, 20, 5), (100, 20, 15)], True, id="same_region_size_different_overlap"),
        pytest.param([(100, 40, 36), (100, 4, 1)], False, id="large_good_case_and_small_poor_case"),
    ],
)
def test_global_dice_agrees_with_monai_per_case_mean_only_for_equal_region_sizes(cases, agree: bool) -> None:
    p = torch.as_tensor(np.stack([_case(*c)[0] for c in cases]))
    t = torch.as_tensor(np.stack([_case(*c)[1] for c in cases]))
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=True)
    metric(y_pred=p[:, None].float(), y=t[:, None].float())
    monai_mean = float(metric.aggregate())
    per_case = [2 * o / (2 * s) for _, s, o in cases]
    assert monai_mean == pytest.approx(np.mean(per_case), abs=1e-6)
    if agree:
        assert dice(p, t) == pytest.approx(monai_mean, abs=1e-6)
    else:  # Dice 0.9 on 40 + 40 voxels and 0.25 on 4 + 4: pooled 2 (36 + 1) / 88 = 0.841 vs mean 0.575
        assert dice(p, t) == pytest.approx(74 / 88, abs=1e-9)
        assert dice(p, t) - monai_mean == pytest.approx(74 / 88 - 0.575, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Empty reference, empty prediction, both empty, under MONAI's ignore_empty
# ---------------------------------------------------------------------------------------------------------------

FULL = [0, 1, 1, 0, 1, 0]
NONE = [0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("pred", "ref", "ours_dice", "monai_ignore_empty", "monai_keep_empty", "ours_sens", "monai_sens"),
    [
        pytest.param(FULL, NONE, 0.0, math.nan, 0.0, 1.0, math.nan, id="empty_reference"),
        pytest.param(NONE, FULL, 0.0, 0.0, 0.0, 0.0, 0.0, id="empty_prediction"),
        pytest.param(NONE, NONE, 1.0, math.nan, 1.0, 1.0, math.nan, id="both_empty"),
    ],
)
def test_empty_masks_follow_monais_ignore_empty_false_and_the_brats_rule(
    pred, ref, ours_dice, monai_ignore_empty, monai_keep_empty, ours_sens, monai_sens
) -> None:
    p, t = torch.tensor([pred]), torch.tensor([ref])
    got = {}
    for ignore in (True, False):
        metric = DiceMetric(include_background=True, reduction="none", ignore_empty=ignore)
        got[ignore] = float(metric(y_pred=p[:, None].float(), y=t[:, None].float()).reshape(-1)[0])
    assert got[True] == pytest.approx(monai_ignore_empty, nan_ok=True)
    assert got[False] == pytest.approx(monai_keep_empty)
    # article and ours: the 1e-8 smoothing gives 1e-8 / n for one empty mask, 1 for both
    assert dice(p, t) == pytest.approx(ours_dice, abs=1e-8)
    assert article_dice(p, t) == pytest.approx(dice(p, t), rel=1e-12)
    # the evaluation (region_metrics): exactly MONAI's ignore_empty=False, and the BraTS HD95 rule
    row = region_metrics(p[:, None, :].bool(), t[:, None, :].bool())[0]
    assert row["dice"] == monai_keep_empty
    assert row["hd95"] == {0.0: HD95_EMPTY_PENALTY_MM, 1.0: 0.0}[monai_keep_empty]
    # sensitivity with an empty reference: MONAI NaN, article, ours and the evaluation 1
    m_sens, _ = monai_pooled_sens_spec(p, t)
    assert m_sens == pytest.approx(monai_sens, nan_ok=True)
    assert sensitivity(p, t) == pytest.approx(ours_sens, abs=1e-8)
    assert row["sensitivity"] == ours_sens


def test_dicemetric_ignore_empty_drops_an_empty_reference_case_that_the_global_dice_counts() -> None:
    p = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]])
    t = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0]])  # case 0: empty reference, two false positives
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=True)
    metric(y_pred=p[:, None].float(), y=t[:, None].float())
    assert float(metric.aggregate()) == pytest.approx(0.5)  # case 1 only
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    metric(y_pred=p[:, None].float(), y=t[:, None].float())
    assert float(metric.aggregate()) == pytest.approx(0.25)  # (0 + 0.5) / 2
    assert dice(p, t) == pytest.approx(2 * 1 / (4 + 2), abs=1e-8)  # pooled: the false positives count


def test_specificity_with_no_negative_voxel_is_one_where_monai_gives_nan() -> None:
    p, t = torch.tensor([[1, 0, 1]]), torch.tensor([[1, 1, 1]])
    _, m_spec = monai_pooled_sens_spec(p, t)
    assert math.isnan(m_spec)
    assert specificity(p, t) == 1.0 == article_specificity(p, t)
    assert region_metrics(p[:, None].bool(), t[:, None].bool())[0]["specificity"] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Non-binary labels
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "ref", "article", "ours"),
    [
        pytest.param([1, 2], [1, 2], 5 / 3, 1.0, id="labels_1_and_2_all_found"),  # article: (1 + 4) / (1 + 2)
        pytest.param([1, 0], [1, 2], 1 / 3, 1 / 2, id="label_2_missed"),  # the article's own example: 1/2
        pytest.param([0, 2], [1, 2], 4 / 3, 1 / 2, id="label_1_missed"),  # 4/3 instead of 1/2 (article: 66.7%?)
        pytest.param([2, 0], [1, 0], 2.0, 1.0, id="label_2_for_label_1"),
    ],
)
def test_sensitivity_counts_every_nonzero_label_alike_where_the_article_multiplies_values(
    pred, ref, article, ours
) -> None:
    p, t = torch.tensor([pred]), torch.tensor([ref])
    assert article_sensitivity(p, t) == pytest.approx(article, rel=1e-7)
    assert sensitivity(p, t) == pytest.approx(ours, rel=1e-7)
    assert sensitivity(p, t) == pytest.approx(sensitivity(p != 0, t != 0), rel=1e-12)  # == binarised first


def test_monai_confusion_matrix_is_wrong_on_non_binary_labels_and_ours_equals_it_after_binarising() -> None:
    p = torch.tensor([[1, 2, 0, 2]])
    t = torch.tensor([[1, 2, 2, 0]])
    raw_sens, raw_spec = monai_pooled_sens_spec(p, t)  # (pred + ref) == 2 counts pred 2 / ref 0 as a TP
    assert raw_sens == pytest.approx(0.6) and raw_spec == pytest.approx(0.0)  # from FP = -1
    bin_sens, bin_spec = monai_pooled_sens_spec(p != 0, t != 0)
    assert sensitivity(p, t) == pytest.approx(bin_sens, abs=1e-7) == pytest.approx(2 / 3)
    assert specificity(p, t) == pytest.approx(bin_spec, abs=1e-7) == pytest.approx(0.0, abs=1e-7)


def test_specificity_of_the_article_was_already_right_on_non_binary_labels() -> None:
    rng = np.random.default_rng(5)
    p, t = (torch.as_tensor(rng.integers(0, 5, size=(2, 9, 7))) for _ in range(2))
    _, fp, tn, _ = np_counts(p.numpy(), t.numpy())
    assert specificity(p, t) == pytest.approx(article_specificity(p, t), rel=1e-12)
    assert specificity(p, t) == pytest.approx((tn + SMOOTH) / (tn + fp + SMOOTH), rel=1e-12)


def test_dice_of_a_label_value_equals_monai_single_channel_dice_of_label_1() -> None:
    rng = np.random.default_rng(6)
    p, t = (torch.as_tensor(rng.integers(0, 3, size=(1, 1, 8, 8))) for _ in range(2))
    monai = float(compute_dice(p.float(), t.float(), ignore_empty=False))  # (B, 1, ...): label 1 only
    assert dice(p, t, val=1) == pytest.approx(monai, abs=1e-6)
    assert dice(p, t, val=1) == pytest.approx(article_dice(p, t, val=1), rel=1e-12)
    tp, fp, _, fn = np_counts((p == 2).numpy(), (t == 2).numpy())
    assert dice(p, t, val=2) == pytest.approx((2 * tp + SMOOTH) / (2 * tp + fp + fn + SMOOTH), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# One-hot multi-class (B, C, ...)
# ---------------------------------------------------------------------------------------------------------------


def _one_hot(labels: np.ndarray, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels), classes).movedim(-1, 1).contiguous()  # (B, C, ...)


def test_one_hot_dice_pools_every_channel_with_background_where_monai_averages_per_class() -> None:
    rng = np.random.default_rng(7)
    lp, lt = rng.integers(0, 3, size=(1, 10, 9)), rng.integers(0, 3, size=(1, 10, 9))
    p, t = _one_hot(lp, 3), _one_hot(lt, 3)
    per_class = compute_dice(p.float(), t.float(), include_background=True, ignore_empty=False).reshape(-1)
    for c in range(3):  # one channel of one case: ours == MONAI's value for that class
        assert dice(p[:, c], t[:, c]) == pytest.approx(float(per_class[c]), abs=1e-6)
    # the whole one-hot tensor: background counted, channels pooled = every voxel counted once per tensor
    accuracy = float((lp == lt).mean())
    assert dice(p, t) == pytest.approx(accuracy, abs=1e-8)  # sum_c 2 TP_c / (2 N) = accuracy
    assert dice(p, t) == pytest.approx(article_dice(p, t), rel=1e-12)
    monai_mean = float(per_class[1:].mean())  # MONAI's usual report: foreground classes, mean
    assert abs(dice(p, t) - monai_mean) > 0.01


def test_one_hot_sensitivity_pooled_over_channels_is_accuracy_as_monais_default_aggregate() -> None:
    rng = np.random.default_rng(8)
    lp, lt = rng.integers(0, 4, size=(2, 6, 7)), rng.integers(0, 4, size=(2, 6, 7))
    p, t = _one_hot(lp, 4), _one_hot(lt, 4)
    metric = ConfusionMatrixMetric(metric_name="sensitivity", include_background=True, reduction="mean")
    metric(y_pred=p.float(), y=t.float())
    monai_sens = float(metric.aggregate()[0])
    assert sensitivity(p, t) == pytest.approx(float((lp == lt).mean()), abs=1e-8)
    assert sensitivity(p, t) == pytest.approx(monai_sens, abs=1e-6)
    sample = ConfusionMatrixMetric(metric_name="sensitivity", include_background=True, reduction="mean",
                                   compute_sample=True)
    sample(y_pred=p.float(), y=t.float())
    assert float(sample.aggregate()[0]) != pytest.approx(sensitivity(p, t), abs=1e-4)  # per-sample mean differs


# ---------------------------------------------------------------------------------------------------------------
# Layout, precision, device
# ---------------------------------------------------------------------------------------------------------------


def test_non_contiguous_input_works_where_the_article_view_raises() -> None:
    rng = np.random.default_rng(9)
    p = torch.as_tensor(rng.integers(0, 2, size=(5, 4, 3))).permute(2, 1, 0)  # (3, 4, 5), not contiguous
    t = torch.as_tensor(rng.integers(0, 2, size=(5, 4, 3))).permute(2, 1, 0)
    with pytest.raises(RuntimeError, match="view"):
        article_sensitivity(p, t)
    tp, fp, tn, fn = np_counts(p.numpy(), t.numpy())
    assert sensitivity(p, t) == pytest.approx((tp + SMOOTH) / (tp + fn + SMOOTH), rel=1e-12)
    assert specificity(p, t) == pytest.approx((tn + SMOOTH) / (tn + fp + SMOOTH), rel=1e-12)
    assert dice(p, t) == pytest.approx((2 * tp + SMOOTH) / (2 * tp + fp + fn + SMOOTH), rel=1e-12)


def test_counts_stay_exact_beyond_2_to_the_24_voxels_where_the_article_sums_float32() -> None:
    n = 2**24 + 3
    p = torch.ones((1, n), dtype=torch.uint8)
    t = p.clone()
    t[0, 0] = 0
    exact = 2 * (n - 1) / (2 * n - 1)  # I = n - 1, |P| = n, |T| = n - 1
    assert float(torch.ones(n).sum()) != n  # float32 cannot hold the count
    assert dice(p, t) == pytest.approx(exact, rel=1e-15)
    assert article_dice(p, t) != pytest.approx(exact, rel=1e-15)
    assert article_dice(p, t) == pytest.approx(exact, abs=1e-6)  # wrong in the 8th digit only


def test_shape_mismatch_is_an_error_not_a_silent_broadcast() -> None:
    with pytest.raises(ValueError, match=r"same shape"):
        dice(torch.ones(1, 1, 4, 4), torch.ones(1, 4, 4))


def test_results_are_python_floats_and_numpy_inputs_work() -> None:
    p, t = np.array([[1, 0, 1, 1]]), np.array([[1, 1, 0, 1]])
    for fn, expected in ((dice, 4 / 6), (sensitivity, 2 / 3), (specificity, 0.0)):
        value = fn(p, t)
        assert type(value) is float
        assert value == pytest.approx(expected, abs=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_target_on_another_device_follows_the_prediction_where_the_article_raises() -> None:
    p = torch.tensor([[1, 0, 1, 1]], device="cuda")
    t = torch.tensor([[1, 1, 0, 1]])
    with pytest.raises(RuntimeError):
        article_sensitivity(p, t)
    assert sensitivity(p, t) == pytest.approx(2 / 3, abs=1e-8)
    assert dice(p, t) == pytest.approx(dice(p.cpu(), t), rel=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# HD95: MONAI's definition, checked against MONAI and against brute force
# ---------------------------------------------------------------------------------------------------------------

SHAPE = (14, 12, 10)
HD_CASES = [
    pytest.param(blob(SHAPE, (6, 6, 5), (4, 3, 3)), blob(SHAPE, (7, 5, 5), (3, 4, 2)), (1.0, 1.0, 1.0),
                 id="overlapping_ellipsoids_isotropic"),
    pytest.param(blob(SHAPE, (6, 6, 5), (4, 3, 3), 1, 0.05), blob(SHAPE, (7, 5, 4), (4, 4, 3), 2, 0.05),
                 (0.9, 1.3, 3.0), id="irregular_blobs_anisotropic"),
    pytest.param(blob(SHAPE, (0, 6, 5), (4, 4, 3)), blob(SHAPE, (1, 5, 9), (3, 4, 3)), (1.0, 1.0, 2.5),
                 id="touching_the_image_border"),
    pytest.param(blob(SHAPE, (2, 2, 2), (1, 1, 1)), blob(SHAPE, (11, 9, 8), (2, 2, 1)), (1.2, 0.8, 2.0),
                 id="disjoint_far_apart"),
    pytest.param(blob(SHAPE, (6, 6, 5), (0.5, 0.5, 0.5)), blob(SHAPE, (6, 6, 5), (4, 4, 4)), (1.0, 2.0, 1.5),
                 id="single_voxel_inside_a_ball"),
    pytest.param(np.ones(SHAPE, bool), blob(SHAPE, (6, 6, 5), (5, 5, 4)), (1.0, 1.0, 1.0),
                 id="prediction_fills_the_image"),
]


@pytest.mark.parametrize(("a", "b", "spacing"), HD_CASES)
def test_hd95_equals_monai_compute_hausdorff_distance_and_a_brute_force_cdist(a, b, spacing) -> None:
    expected = brute_hd95(a, b, spacing)
    monai = monai_hd95(a, b, spacing)
    assert monai == pytest.approx(expected, rel=1e-5)
    for method in ("monai", "torch"):
        for crop in (True, False):
            ours = hd95(torch.as_tensor(a), torch.as_tensor(b), spacing, crop=crop, method=method)
            assert ours == pytest.approx(monai, rel=1e-6), (method, crop)


@pytest.mark.parametrize(("a", "b", "spacing"), HD_CASES)
def test_cropping_to_the_union_box_keeps_every_surface_distance_of_monais_uncropped_call(a, b, spacing) -> None:
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    # MONAI skips its own crop when given a mask: this is its computation on the full image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a FutureWarning inside MONAI (always_return_as_numpy)
        _, (full_ab, full_ba), _ = get_edge_surface_distance(ta.float(), tb.float(), spacing=spacing,
                                                             symmetric=True, mask=torch.ones_like(ta))
    ours_ab, ours_ba = surface_distances(ta, tb, spacing, crop=True)
    torch.testing.assert_close(torch.sort(ours_ab).values, torch.sort(full_ab.float()).values)
    torch.testing.assert_close(torch.sort(ours_ba).values, torch.sort(full_ba.float()).values)


def test_surface_is_monais_six_neighbour_erosion_with_the_image_border_as_background() -> None:
    m = np.zeros((5, 5, 5), bool)
    m[0:3, 1:4, 1:4] = True  # touches the border at x = 0
    edges = mask_edges(torch.as_tensor(m)).numpy()
    assert edges[0, 2, 2]  # on the image border: a surface voxel, as MONAI (scipy border_value=0)
    assert not edges[1, 2, 2]  # the one interior voxel
    assert set(map(tuple, np.argwhere(edges))) == set(map(tuple, np_surface(m)))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), DENSITIES, DENSITIES,
       st.tuples(*[st.sampled_from([0.5, 1.0, 1.5, 3.0])] * 3))
def test_hd95_equals_monai_on_random_masks_empty_ones_included(seed, dp, dt, spacing) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 8, size=3))
    a, b = rng.random(shape) < dp, rng.random(shape) < dt
    monai = monai_hd95(a, b, spacing)
    for method in ("monai", "torch"):
        ours = hd95(torch.as_tensor(a), torch.as_tensor(b), spacing, method=method)
        assert ours == pytest.approx(monai, rel=1e-6, nan_ok=True)  # NaN when either is empty
    if a.any() and b.any():
        assert monai == pytest.approx(brute_hd95(a, b, spacing), rel=1e-5)


def test_hd95_is_the_max_of_directed_percentiles_not_medpys_pooled_percentile() -> None:
    a = blob(SHAPE, (6, 6, 5), (4, 4, 3))
    b = a.copy()
    b[12:14, 10:12, 8:10] = True  # a small far island in b only: a large ref->pred tail
    spacing = (1.0, 1.0, 1.0)
    ours = hd95(torch.as_tensor(a), torch.as_tensor(b), spacing)
    assert ours == pytest.approx(monai_hd95(a, b, spacing), rel=1e-6)
    assert ours == pytest.approx(brute_hd95(a, b, spacing), rel=1e-5)
    assert brute_hd95(a, b, spacing, pooled=True) < 0.9 * ours  # MedPy's hd95 is lower here


@pytest.mark.parametrize(
    ("a_empty", "b_empty", "monai_hd", "brats_value"),
    [
        pytest.param(True, False, math.inf, HD95_EMPTY_PENALTY_MM, id="empty_prediction"),
        pytest.param(False, True, math.inf, HD95_EMPTY_PENALTY_MM, id="empty_reference"),
        pytest.param(True, True, math.nan, 0.0, id="both_empty"),
    ],
)
def test_empty_hd95_is_nan_in_monai_and_brats_0_or_373_in_the_evaluation(a_empty, b_empty, monai_hd, brats_value):
    full = blob(SHAPE, (6, 6, 5), (3, 3, 3))
    a = np.zeros(SHAPE, bool) if a_empty else full
    b = np.zeros(SHAPE, bool) if b_empty else full
    ta, tb = torch.as_tensor(a)[None, None].float(), torch.as_tensor(b)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_max = float(compute_hausdorff_distance(ta, tb, include_background=True))
    assert monai_max == pytest.approx(monai_hd, nan_ok=True)  # plain Hausdorff: inf for one empty mask
    # HD95: torch.quantile of all-inf distances is NaN, so MONAI's HD95 is NaN for one empty mask too
    assert math.isnan(monai_hd95(a, b, 1.0))
    assert math.isnan(hd95(torch.as_tensor(a), torch.as_tensor(b), 1.0))
    row = region_metrics(torch.as_tensor(a)[None], torch.as_tensor(b)[None], 1.0)[0]
    assert row["hd95"] == brats_value


def test_monai_mean_hd95_silently_drops_a_missed_region_that_the_brats_rule_penalises() -> None:
    ref = np.stack([blob(SHAPE, (6, 6, 5), (3, 3, 3)), blob(SHAPE, (6, 6, 5), (2, 2, 2))])
    pred = np.stack([blob(SHAPE, (7, 6, 5), (3, 3, 3)), np.zeros(SHAPE, bool)])  # case 1: tumour missed
    metric = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric(y_pred=torch.as_tensor(pred)[:, None].float(), y=torch.as_tensor(ref)[:, None].float())
        monai_mean = float(metric.aggregate())
    case0 = brute_hd95(pred[0], ref[0], (1.0, 1.0, 1.0))
    assert monai_mean == pytest.approx(case0, rel=1e-5)  # the missed case is NaN and left out of the mean
    ours = [region_metrics(torch.as_tensor(pred[i])[None], torch.as_tensor(ref[i])[None])[0]["hd95"] for i in (0, 1)]
    assert ours[0] == pytest.approx(case0, rel=1e-5)
    assert ours[1] == HD95_EMPTY_PENALTY_MM
    assert np.mean(ours) == pytest.approx((case0 + 373.13) / 2, rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# region_metrics against plain NumPy; the torch path without NumPy; the loader
# ---------------------------------------------------------------------------------------------------------------


def test_region_metrics_match_numpy_counts_and_brute_force_hd95_with_true_negatives_outside_a_crop() -> None:
    a = np.stack([blob(SHAPE, (6, 6, 5), (4, 3, 3), 3, 0.05), blob(SHAPE, (6, 6, 5), (2, 2, 2))])
    b = np.stack([blob(SHAPE, (7, 5, 4), (4, 4, 3), 4, 0.05), blob(SHAPE, (7, 6, 5), (2, 3, 2))])
    spacing, extra = (1.0, 1.5, 2.0), 1000
    rows = region_metrics(torch.as_tensor(a), torch.as_tensor(b), spacing, n_voxels=a[0].size + extra)
    for i, row in enumerate(rows):
        tp, fp, tn, fn = np_counts(a[i], b[i])
        tn += extra
        assert row["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12)
        assert row["sensitivity"] == pytest.approx(tp / (tp + fn), rel=1e-12)
        assert row["specificity"] == pytest.approx(tn / (tn + fp), rel=1e-12)
        assert row["hd95"] == pytest.approx(brute_hd95(a[i], b[i], spacing), rel=1e-5)
        assert (row["pred_voxels"], row["ref_voxels"]) == (int(a[i].sum()), int(b[i].sum()))


def test_torch_distance_path_used_on_cuda_never_goes_through_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.as_tensor(blob(SHAPE, (6, 6, 5), (4, 3, 3), 5, 0.05))
    b = torch.as_tensor(blob(SHAPE, (7, 5, 4), (4, 4, 3), 6, 0.05))
    expected = monai_hd95(a.numpy(), b.numpy(), (1.0, 2.0, 1.5))

    def no_numpy(*args, **kwargs):
        raise AssertionError("a tensor went through NumPy")

    monkeypatch.setattr("pipeline.evaluation.metrics._auto_method", lambda device: "torch")
    monkeypatch.setattr(torch.Tensor, "numpy", no_numpy)
    monkeypatch.setattr(torch.Tensor, "__array__", no_numpy)
    rows = region_metrics(a[None], b[None], (1.0, 2.0, 1.5))
    assert rows[0]["hd95"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_region_metrics_on_cuda_equal_the_cpu_values() -> None:
    a = torch.as_tensor(np.stack([blob(SHAPE, (6, 6, 5), (4, 3, 3), 7, 0.05), np.zeros(SHAPE, bool)]))
    b = torch.as_tensor(np.stack([blob(SHAPE, (7, 5, 4), (4, 4, 3), 8, 0.05), blob(SHAPE, (3, 3, 3), (1, 1, 1))]))
    cpu = region_metrics(a, b, (1.0, 1.5, 2.0))
    gpu = region_metrics(a.cuda(), b.cuda(), (1.0, 1.5, 2.0))
    for c, g in zip(cpu, gpu, strict=True):
        assert g == pytest.approx(c, rel=1e-6)


def test_load_nii_to_array_returns_scaled_float_data_and_the_affine(tmp_path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    affine = np.diag([1.2, 0.9, 3.0, 1.0])
    affine[:3, 3] = [-10, 5, 2]
    img = nib.Nifti1Image(data, affine)
    img.header.set_slope_inter(0.5, 1.0)
    path = tmp_path / "x.nii.gz"
    nib.save(img, path)
    arr, aff = load_nii_to_array(path)
    assert arr.dtype == np.float64 and aff.shape == (4, 4)
    np.testing.assert_allclose(arr, data * 0.5 + 1.0)
    np.testing.assert_allclose(aff, affine)
    with pytest.raises(ExpiredDeprecationError):  # why the article's loader no longer runs
        nib.load(path).get_data()


@pytest.mark.parametrize("spacing", [pytest.param((1.0, 1.0, 1.0), id="isotropic"),
                                     pytest.param((0.8, 1.0, 2.5), id="anisotropic")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_legacy_nsd_equals_monais_surface_dice_at_the_same_tolerance(spacing, seed):
    from monai.metrics import compute_surface_dice

    from pipeline.evaluation.metrics import NSD_TOLERANCE_MM, region_metrics

    rng = np.random.default_rng(seed)
    shape = (24, 22, 18)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    def blob() -> np.ndarray:
        centre = rng.uniform(6, 14, 3)
        return (((grid - centre[:, None, None, None]) ** 2).sum(0) < rng.uniform(12, 30)).astype(bool)
    pred, ref = blob(), blob()
    ours = region_metrics(torch.as_tensor(pred[None]), torch.as_tensor(ref[None]), spacing)[0]["nsd"]
    monai = compute_surface_dice(torch.as_tensor(pred[None, None]).float(), torch.as_tensor(ref[None, None]).float(),
                                 class_thresholds=[NSD_TOLERANCE_MM], include_background=True, spacing=spacing)
    assert ours == pytest.approx(float(monai), abs=1e-6)


@pytest.mark.parametrize(("pred_on", "ref_on", "expected"), [pytest.param(False, False, 1.0, id="both_empty"),
                                                             pytest.param(True, False, 0.0, id="reference_empty"),
                                                             pytest.param(False, True, 0.0, id="prediction_empty")])
def test_legacy_nsd_of_empty_regions_follows_the_dice_rule(pred_on, ref_on, expected):
    from pipeline.evaluation.metrics import region_metrics

    pred, ref = torch.zeros(1, 8, 8, 8, dtype=torch.bool), torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    pred[0, 2:4, 2:4, 2:4], ref[0, 3:5, 3:5, 3:5] = pred_on, ref_on
    assert region_metrics(pred, ref)[0]["nsd"] == expected
