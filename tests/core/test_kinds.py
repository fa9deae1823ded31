"""No writer puts its files into another kind's folder (pipeline.core.kinds): evaluate wrote its tables among a
model's segmentations, and inference its segmentations among an evaluation's tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.core.kinds import FOLDER_RECORDS, kinds_in

#: A record of each kind, as its writer leaves it (the contents the readers look for).
RECORDS = {"run": ("run.json", {"ids": {}}), "segmentations": ("provenance.json", {"cases": {}}),
           "evaluation": ("summary.json", {"reference": "/data", "predictions": "/seg"}),
           "comparison": ("comparison.json", {"algorithms": {}})}


def _folder_of(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / f"a_{kind}_folder"
    folder.mkdir()
    name, content = RECORDS[kind]
    (folder / name).write_text(json.dumps(content))
    return folder


def test_every_kind_has_a_record_here() -> None:
    assert set(RECORDS) == set(FOLDER_RECORDS) and all(RECORDS[k][0] in FOLDER_RECORDS[k] for k in RECORDS)


@pytest.mark.parametrize(("name", "content"), [("summary.json", {"notes": "mine"}), ("run.json", {"notes": "mine"}),
                                               ("run.json", [1, 2])])
def test_a_users_file_of_a_records_name_is_no_record(tmp_path: Path, name: str, content: object) -> None:
    """A user's ``run.json`` counted as a run's folder here, while training (`is_run_record`) called it a user's
    file: one test of a run's record now, its ``ids``."""
    from pipeline.core.kinds import is_run_record

    (tmp_path / name).write_text(json.dumps(content))
    (tmp_path / "models").mkdir()
    assert kinds_in(tmp_path) == {} and kinds_in(tmp_path / "models") == {}
    assert not is_run_record(content)


def test_a_run_json_that_is_no_object_is_one_error(tmp_path: Path) -> None:
    """A ``run.json`` holding a list was returned as the record, and its readers failed on ``.get`` (a traceback)."""
    from pipeline.model.record import RunError, read_record

    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(RunError, match=rf"{tmp_path / 'run.json'} holds no training run's record .* move it aside"):
        read_record(tmp_path)


def _claim(writer: str, folder: Path, tiny_dataset: Path) -> None:
    if writer == "run":
        from tests.helpers import parse_bundle

        parser = parse_bundle("training", {"dataset_dir": str(tiny_dataset), "run_dir": str(folder), "device": "cpu",
                                           "folds": 2})
        try:
            parser.get_parsed_content("run_record")  # train.yaml's first step that writes
        except RuntimeError as err:  # MONAI's wrapping of a config expression's error
            raise err.__cause__ from None
        return
    if writer == "segmentations":
        from pipeline.data.source import DataSource
        from pipeline.inference.outputs import InferenceReport, guard_outputs

        data = DataSource(tiny_dataset)
        report = InferenceReport(folder, model="m1")
        guard_outputs(data, data.inference_items(), folder, report=report)
        report.finish()
    else:
        from pipeline.evaluation.reference import claim_output

        claim_output(folder, writer, "--out")


#: (writer, the kinds whose folders it may write into)
WRITERS = {"run": (), "segmentations": (), "evaluation": (), "pictures": ("evaluation",), "comparison": ()}


@pytest.mark.parametrize("other", list(RECORDS))
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_writer_refuses_a_folder_of_another_kind(tiny_dataset: Path, tmp_path: Path, writer: str,
                                                    other: str) -> None:
    folder = _folder_of(tmp_path, other)
    before = sorted(p.name for p in folder.iterdir())
    if other == writer or other in WRITERS[writer]:
        if writer != "run":  # (a run folder holding a run is refused as such: test_runs)
            _claim(writer, folder, tiny_dataset)  # its own kind (or one it shares): claimed
        return
    with pytest.raises(UserError, match=rf"{folder} holds .*\({RECORDS[other][0]}\); one folder per kind of result: "
                                        rf"pass another --(out|output_dir|run_dir) for the {writer}"):
        _claim(writer, folder, tiny_dataset)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written, no lock left


def test_evaluate_into_another_models_segmentations_is_one_line(tiny_dataset: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    from pipeline.__main__ import main
    from tests.helpers import corrupted_predictions

    pred = corrupted_predictions(tiny_dataset, tmp_path / "pred", 1)
    other = _folder_of(tmp_path, "segmentations")
    assert main(["evaluate", str(pred), str(tiny_dataset), "--out", str(other)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"error: {other} holds a model's segmentations (provenance.json); one folder per kind of result: "
                    "pass another --out for the evaluation")
    assert sorted(p.name for p in other.iterdir()) == ["provenance.json"]


@pytest.mark.parametrize("inside", ["models", "tensorboard"])
def test_a_runs_own_sub_folders_are_the_runs(tmp_path: Path, inside: str) -> None:
    """Segmentations, an evaluation or a comparison written into a run's models/ (beside model.pt) were accepted."""
    from pipeline.core.kinds import refuse_other_kinds

    run = _folder_of(tmp_path, "run")
    (run / inside).mkdir()
    for kind in ("segmentations", "evaluation", "comparison"):
        with pytest.raises(UserError, match=rf"{run / inside} holds a training run \(run.json\)"):
            refuse_other_kinds(run / inside, kind, "--out")
    refuse_other_kinds(run / inside, "run", "--ckpt_dir")  # its own models


@pytest.mark.parametrize("other", ["run", "segmentations", "evaluation", "comparison"])
def test_a_datalist_never_replaces_another_kinds_record(tiny_dataset: Path, tmp_path: Path, other: str) -> None:
    """`datalist --out RUN/run.json --force` replaced the run's record with a datalist."""
    from pipeline.data.datalist import write_datalist

    folder = _folder_of(tmp_path, other)
    record = folder / RECORDS[other][0]
    before = record.read_bytes()
    with pytest.raises(UserError, match=rf"{record} is the record of .* there, not a datalist: pass another --out"):
        write_datalist(tiny_dataset, record, folds=2, force=True)
    assert record.read_bytes() == before
