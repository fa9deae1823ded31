"""Inference writes BraTS labels on the input's own grid: the bundle's pre/post-processing round-trips exactly."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser

from pipeline.datasets import discover_cases
from pipeline.inference import write_label_like
from pipeline.labels import labels_to_regions
from tests.conftest import CONFIGS


def _inference_parser(tiny_dataset: Path, out: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "common.yaml"), str(CONFIGS / "inference.yaml")])
    parser.update({"dataset_dir": str(tiny_dataset), "output_dir": str(out), "device": "cpu"})
    return parser


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
