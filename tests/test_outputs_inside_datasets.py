"""No writer puts its outputs inside a dataset folder, an input of the command or not (`refuse_inside_dataset`,
which every writer's `OutputGuard` applies: `pipeline.data.layouts.output_guard`)."""

from __future__ import annotations

import ast
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
from monai.networks.nets import UNet

from pipeline.core.errors import UserError
from pipeline.data.layouts import dataset_around
from pipeline.data.source import DataSource

SMALL = functools.partial(UNet, spatial_dims=3, in_channels=4, out_channels=3, channels=[4, 8], strides=[2],
                          num_res_units=0)


def _datalist(data: Path, out: Path) -> None:
    from pipeline.data.datalist import write_datalist

    write_datalist(data, out, folds=2)


def _segmentations(data: Path, out: Path) -> None:
    from pipeline.inference.outputs import InferenceReport, guard_outputs

    source = DataSource(data)
    guard_outputs(source, source.inference_items(), out, report=InferenceReport(out, model="m1"))


def _run(data: Path, out: Path) -> None:
    from pipeline.model.record import run_ids, start_training

    source = DataSource(data)
    start_training(out, out / "models", resume=False, overwrite=False, network_factory=SMALL,
                   ids=run_ids(source, fold=0, roi_size=[32, 32, 32]), guard=source.guard)


def _evaluation(data: Path, out: Path) -> None:
    from pipeline.evaluation.reference import claim_output

    claim_output(out, "evaluation", "--out")


def _comparison(data: Path, out: Path) -> None:
    from pipeline.evaluation.reference import claim_output

    claim_output(out, "comparison", "--out")


def _picture(data: Path, out: Path) -> None:
    from pipeline.__main__ import _plot, build_parser

    table = Path(tempfile.mkdtemp()) / "history.csv"  # a run's table, outside any dataset
    table.write_text("epoch,loss,lr\n1,0.5,0.001\n")
    _plot(build_parser().parse_args(["plot", "curves", str(table), "--out", str(out)]))


def _export(data: Path, out: Path) -> None:
    from pipeline.data.layouts import export_refusal

    refusal = export_refusal(["ckpt_export", "network_def", "--filepath", str(out), "--ckpt_file", "model.pt"])
    if refusal is not None:
        raise refusal


WRITERS = {"datalist": (_datalist, "datalist.json"), "segmentations": (_segmentations, "seg"),
           "a_training_run": (_run, "run"), "an_evaluation": (_evaluation, "eval"),
           "a_comparison": (_comparison, "comparison"), "a_picture": (_picture, "curves.png"),
           "a_monai_export": (_export, "model.ts")}


@pytest.mark.parametrize("place", ["root", "case_folder", "labelsTr", "four_folders_down", "links_to_nowhere"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_no_writer_writes_inside_another_dataset(layout_datasets, tmp_path: Path, writer: str, place: str) -> None:
    """Segmentations went into another dataset's labelsTr/ (where a case of the same name has its label), a run or
    a datalist into another dataset's case folder: only the command's own input dataset was guarded."""
    layout = "msd" if place == "labelsTr" else "brats2021"
    data = layout_datasets["brats2021"]  # the command's input
    other = Path(shutil.copytree(layout_datasets[layout], tmp_path / "other"))
    case = next(p for p in sorted(other.iterdir()) if p.is_dir())
    if place == "links_to_nowhere":  # a case folder whose files are on a share not mounted
        for f in case.iterdir():
            f.unlink()
            f.symlink_to(tmp_path / "unmounted" / f.name)
    inside = {"root": other, "labelsTr": other / "labelsTr", "four_folders_down": other / "derivatives" / "a" / "b"
              / "c"}.get(place, case)
    write, name = WRITERS[writer]
    if place == "links_to_nowhere":
        other = case.parent  # the advice: outside the dataset that holds the case
    before = sorted(other.rglob("*"))
    inner = {"root": "", "four_folders_down": ""}.get(place, rf"/{inside.name}")
    with pytest.raises(UserError, match=rf"lies inside the dataset folder {other.resolve()}{inner}: .* outside it "
                                        rf"\(e\.g\. {tmp_path.resolve()}/runs/{name}\)"):
        write(data, inside / name)
    assert sorted(other.rglob("*")) == before


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_writer_beside_a_dataset_is_not_inside_it(layout_datasets, tmp_path: Path, writer: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative ../ path from inside a dataset, and a folder next to it, are outside it; so is a project's runs/
    beside one case's folder (a case read alone, as the README shows) or an unrelated dataset.json."""
    data = Path(shutil.copytree(layout_datasets["brats2021"], tmp_path / "data"))
    project = tmp_path / "project"
    case = next(p for p in sorted(data.iterdir()) if p.is_dir())
    shutil.copytree(case, project / case.name)
    (project / "dataset.json").write_text("{}")
    monkeypatch.chdir(data)
    assert dataset_around(Path("..") / "out") is None and dataset_around(tmp_path) is None
    assert dataset_around(project / "runs" / "x") is None and dataset_around(project / case.name) is not None
    write, name = WRITERS[writer]
    write(data, tmp_path / "beside" / name)
    write(data, project / "runs" / name)


def _uses(name: str, *, calls: bool) -> list[str]:
    """The modules of the package and the benchmarks that call ``name`` (``calls``), or name it at all."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for path in [*sorted((root / "pipeline").rglob("*.py")), *sorted((root / "bench").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if calls:
                node = node.func if isinstance(node, ast.Call) else None
            used = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if used == name and str(path.relative_to(root)) not in found:
                found.append(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize(("name", "calls"), [("OutputGuard", True), ("refuse_inside_dataset", False)])
def test_every_writer_gets_its_guard_from_one_constructor(name: str, calls: bool) -> None:
    """The rule "nothing inside a dataset" was called beside each writer's input guard, so a writer added later could
    check one and forget the other: a guard is now made only by `output_guard`, which applies both."""
    assert _uses(name, calls=calls) == ["pipeline/data/layouts/__init__.py"]
