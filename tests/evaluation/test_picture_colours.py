"""One colour per region in every picture of an evaluation: the box plot's dots take the colours the overlays draw
the same regions in, under every scheme (the box plot drew nnU-Net regions and label values in colours of its
own), and a label value keeps its colour whatever other values a case holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core.figures import region_colour
from pipeline.data.colours import scheme_colours
from pipeline.evaluation.plots import _contour_regions


def _nnunet_scheme(tmp_path_factory: pytest.TempPathFactory) -> str:
    from pipeline.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("nnunet") / "Dataset137_BraTS"
    write_dataset(root, cases=1, shape=(16, 16, 16), seed=1, layout="nnunet")
    return f"nnunet:{root / 'dataset.json'}"


@pytest.mark.parametrize("scheme", ["brats", "brats2023", "brats2024", "msd", "ped", "nnunet"])
def test_the_box_plot_colours_each_region_as_the_overlays_do(scheme: str,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    if scheme == "nnunet":
        scheme = _nnunet_scheme(tmp_path_factory)
    labels = {"reference": np.arange(5, dtype=np.uint8).reshape(5, 1, 1) * np.ones((1, 4, 4), np.uint8)}
    overlay, _ = _contour_regions(labels, scheme)
    colours = scheme_colours(scheme)
    assert overlay and all(colour == region_colour(region, 0, colours) for region, colour in overlay)


def test_a_label_value_keeps_its_colour_in_every_case_and_in_the_box_plot() -> None:
    both = {"reference": np.array([0, 1, 2], np.uint8).reshape(3, 1, 1)}
    only_two = {"reference": np.array([0, 2, 2], np.uint8).reshape(3, 1, 1)}
    colour = dict(_contour_regions(both, "labels")[0])["label_2"]
    assert dict(_contour_regions(only_two, "labels")[0])["label_2"] == colour
    assert region_colour("label_2", 7, scheme_colours("labels")) == colour
    assert colour != dict(_contour_regions(both, "labels")[0])["label_1"]
    assert len({region_colour(f"label_{v}") for v in range(20)}) == 20  # 20 values apart in one picture


def test_the_box_plot_reads_the_scheme_the_evaluation_beside_it_recorded(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from pipeline.evaluation import plots

    (tmp_path / "metrics.csv").write_text("case,region,dice\nA,label_3,0.5\n")
    (tmp_path / "summary.json").write_text(json.dumps({"reference": "/data", "scheme": "msd"}))
    seen = []
    monkeypatch.setattr(plots, "scheme_colours", lambda scheme: seen.append(scheme) or {})
    plots.plot_dice_boxplot(tmp_path / "metrics.csv", tmp_path / "box.png")
    assert seen == ["msd"] and (tmp_path / "box.png").is_file()


def test_the_training_curves_colour_each_region_as_the_evaluation_does(tmp_path: Path,
                                                                      tmp_path_factory: pytest.TempPathFactory,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's scheme, from its run.json beside history.csv: an nnU-Net run's regions drew in colours of their
    own."""
    import json

    from pipeline.training import monitoring
    from pipeline.training.validation import dice_name

    scheme = _nnunet_scheme(tmp_path_factory)
    regions = list(scheme_colours(scheme))
    columns = ["epoch", "loss", "lr", "val_mean_dice", *map(dice_name, regions)]
    (tmp_path / "history.csv").write_text(",".join(columns) + "\n" + ",".join(["1", "0.5", "0.001", "0.7"] + [
        "0.6"] * len(regions)) + "\n")
    (tmp_path / "run.json").write_text(json.dumps({"ids": {"label_scheme": scheme}}))
    drawn = {}
    real = monitoring.save_figure

    def keep(fig, out):  # noqa: ANN001, ANN202
        for line in (line for ax in fig.axes for line in ax.lines):
            drawn[line.get_label()] = line.get_color()
        return real(fig, out)

    monkeypatch.setattr(monitoring, "save_figure", keep)
    monitoring.plot_training_curves(tmp_path / "history.csv", tmp_path / "progress.png")
    colours = scheme_colours(scheme)
    assert [drawn[f"Dice {dice_name(r)[len('val_dice_'):].upper()}"] for r in regions] == [colours[r] for r in regions]
