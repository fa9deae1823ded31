"""Inference: mirroring TTA averages the probabilities of every flip, each against an independent computation;
BraTS labels are written on the input's own grid (the bundle's pre/post-processing round-trips exactly)."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.inferers import SimpleInferer

from pipeline.data.labels import labels_to_regions
from pipeline.data.layouts import discover_cases
from pipeline.inference.predict import MirrorInferer, probabilities_to_logits, with_tta, write_label_like
from tests.helpers import parse_bundle


def _inference_parser(tiny_dataset: Path, out: Path) -> ConfigParser:
    return parse_bundle("inference", {"dataset_dir": str(tiny_dataset), "output_dir": str(out), "device": "cpu"})


def test_reference_regions_through_the_bundle_postprocessing_give_back_the_reference_labels(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """An oracle prediction: the reference regions, taken through the bundle's own preprocessing beside the
    image (same orientation and foreground crop), come out of Invertd + SaveBratsLabeld as the reference
    file, voxel for voxel, with its affine."""
    case = discover_cases(tiny_dataset)[1]
    ref = nib.load(case.label)
    regions = labels_to_regions(np.asarray(ref.dataobj), "brats").astype(np.float32)  # (3, H, W, D)
    regions_file = tmp_path / "regions.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(regions, 0, -1), ref.affine), regions_file)  # (H, W, D, 3)

    parser = _inference_parser(tiny_dataset, tmp_path / "seg")
    parser["data_keys"] = ["image", "regions"]  # the spatial transforms move the regions with the image
    pre, post = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("postprocessing")
    item = pre({"case": case.case_id, "image": list(case.images), "regions": str(regions_file)})
    assert item["regions"].shape[1:] == item["image"].shape[1:]
    logits = (item["regions"].as_tensor() - 0.5) * 20  # sigmoid > 0.5 exactly on the regions
    post({**item, "pred": logits})

    parser.get_parsed_content("infer_report").writers.wait()  # written by a background thread
    out = nib.load(tmp_path / "seg" / f"{case.case_id}.nii.gz")
    assert out.get_data_dtype() == np.uint8
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.affine, ref.affine)
    np.testing.assert_array_equal(np.asarray(out.dataobj), np.asarray(ref.dataobj))


def test_writer_refuses_a_segmentation_of_another_shape(tiny_dataset: Path, tmp_path: Path) -> None:
    case = discover_cases(tiny_dataset)[0]
    with pytest.raises(ValueError, match=f"case {case.case_id}: segmentation shape"):
        write_label_like(np.zeros((5, 5, 5), np.uint8), case.images[0], tmp_path / "x.nii.gz", case=case.case_id)


def test_writer_never_overwrites_an_input(tiny_dataset: Path, tmp_path: Path) -> None:
    case = discover_cases(tiny_dataset)[0]
    shape = nib.load(case.images[0]).shape
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        write_label_like(np.zeros(shape, np.uint8), case.images[0], case.images[0], case=case.case_id)


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


def test_logits_round_trip_probabilities() -> None:
    p = torch.tensor([0.01, 0.5, 0.99])
    torch.testing.assert_close(torch.sigmoid(probabilities_to_logits(p)), p)
    assert np.isfinite(probabilities_to_logits(torch.tensor([0.0, 1.0])).numpy()).all()
