"""The verbs' options: ``--set ID VALUE`` repeated, every pair reaches the bundle (argparse kept only the last
``--set``); an id given twice, or one the verb sets from its own option, is refused in one line before anything
runs; every list option adds when repeated; ``train --minutes`` takes a budget > 0 only."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import __main__ as cli
from pipeline import commands
from pipeline.commands import set_ids
from pipeline.core.errors import UserError


@pytest.fixture
def where(tmp_path: Path) -> dict[str, Path]:
    """A dataset folder and a trained run (a model file is all the verbs look for before the bundle runs)."""
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    (run / "models").mkdir(parents=True)
    (run / "models" / "model.pt").write_bytes(b"")
    return {"data": data, "run": run}


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The ``--id value`` pairs each verb would hand the bundle (nothing runs)."""
    calls: list[dict[str, str]] = []

    def pairs(words: list[str]) -> dict[str, str]:
        start = max(i for i, w in enumerate(words) if w == "--logging_file") + 2
        return dict(zip(words[start::2], words[start + 1::2], strict=True))

    def fake_run(cmd: list[str], env: object = None) -> int:
        calls.append(pairs([str(c) for c in cmd]))
        return 0

    def fake_cv(*_: object, extra: list[str], **__: object) -> dict:
        calls.append(dict(zip(extra[::2], extra[1::2], strict=True)))
        return {}

    monkeypatch.setattr(commands, "run_child", fake_run)
    monkeypatch.setattr(cli, "cross_validation_summary", fake_cv)
    return calls


def _verb(verb: str, where: dict[str, Path]) -> list[str]:
    return {"train": ["train", str(where["data"]), "--run", str(where["run"].parent / "new")],
            "infer": ["infer", "-i", str(where["data"]), "--run", str(where["run"])],
            "cv": ["cv", str(where["run"])]}[verb]


@pytest.mark.parametrize("verb", ["train", "infer", "cv"])
def test_a_repeated_set_passes_every_pair(verb: str, where: dict[str, Path], launched: list[dict]) -> None:
    argv = [*_verb(verb, where), "--set", "learning_rate", "0.001", "--set", "a#b", "2", "min_et_voxels", "50"]
    assert cli.main(argv) == 0
    assert len(launched) == 1
    expected = {"--learning_rate": "0.001", "--a::b": "2", "--min_et_voxels": "50"}  # MONAI 1.6 spells ids with ::
    assert expected.items() <= launched[0].items()


#: (verb, an id it sets itself, the option that sets it)
TAKEN = [pytest.param("train", "run_dir", "--run", id="train_run_dir"),
         pytest.param("train", "dataset_dir", "DATASET", id="train_dataset_dir"),
         pytest.param("train", "fold", "--fold", id="train_fold"),
         pytest.param("infer", "run_dir", "--run", id="infer_run_dir"),
         pytest.param("infer", "output_dir", "-o/--output", id="infer_output_dir"),
         pytest.param("infer", "dataset_dir", "-i/--input", id="infer_dataset_dir"),
         pytest.param("cv", "infer_fold", "--folds", id="cv_infer_fold"),
         pytest.param("cv", "output_dir", "RUN_DIR/cv/seg", id="cv_output_dir"),
         *(pytest.param(verb, "meta_file", "the bundle's metadata.json", id=f"{verb}_meta_file")
           for verb in ("train", "infer", "cv"))]


@pytest.mark.parametrize(("verb", "key", "option"), TAKEN)
def test_a_set_of_an_id_the_verb_sets_itself_is_refused(verb: str, key: str, option: str, where: dict[str, Path],
                                                        launched: list[dict],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*_verb(verb, where), "--set", key, "elsewhere"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"error: --set {key}: this command sets {key} from {option}; give it there, not in --set"
    assert launched == []


@pytest.mark.parametrize("verb", ["train", "infer", "cv"])
def test_an_id_set_twice_is_refused(verb: str, where: dict[str, Path], launched: list[dict],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*_verb(verb, where), "--set", "train#optimizer#lr", "1", "--set", "train::optimizer::lr",
                     "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --set train::optimizer::lr is given twice (1 and 2): give each id once")
    assert launched == []


@pytest.mark.parametrize(("pairs", "message"), [
    pytest.param(["a", "1", "b"], "--set takes ID VALUE pairs, got 3 word(s): a 1 b", id="odd_count"),
    pytest.param(["a", "1", "a", "1"], "--set a is given twice (1 and 1): give each id once", id="same_value_twice")])
def test_set_ids_refusals(pairs: list[str], message: str) -> None:
    with pytest.raises(UserError) as raised:
        set_ids(pairs)
    assert str(raised.value) == message


def test_an_option_the_verb_did_not_use_stays_open_to_set() -> None:
    """--set device cpu is fine when --device was not given (the verb sets only the ids of the options used)."""
    assert set_ids(["device", "cpu"], {"run_dir": "--run"}) == {"device": "cpu"}


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf", "ten"])
def test_train_minutes_must_be_a_budget_above_zero(minutes: str, where: dict[str, Path], launched: list[dict],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """0 would have trained train.yaml's 300 epochs with the budget recipe, not "no time"."""
    with pytest.raises(SystemExit) as exited:
        cli.main([*_verb("train", where), f"--minutes={minutes}"])
    assert exited.value.code == 2 and launched == []
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"argument --minutes: must be a number of minutes > 0, got '{minutes}'")


def test_train_minutes_reach_the_bundle_as_the_time_budget(where: dict[str, Path], launched: list[dict]) -> None:
    assert cli.main([*_verb("train", where), "--minutes", "7.5"]) == 0
    assert launched[0]["--time_budget_min"] == "7.5"


@pytest.mark.parametrize(("argv", "dest", "expected"), [
    pytest.param(["cv", "run", "--folds", "0", "1", "--folds", "2"], "folds", [0, 1, 2], id="cv_folds"),
    pytest.param(["compare", "ref", "a", "b", "--names", "x", "--names", "y"], "names", ["x", "y"],
                 id="compare_names"),
    pytest.param(["synth", "out", "--layout", "nnunet", "--channels", "T1", "--channels", "FLAIR"], "channels",
                 ["T1", "FLAIR"], id="synth_channels"),
    pytest.param(["infer", "-i", "d", "--run", "r", "--set", "a", "1", "--set", "b", "2"], "set",
                 ["a", "1", "b", "2"], id="infer_set")])
def test_a_repeated_list_option_keeps_every_value(argv: list[str], dest: str, expected: list) -> None:
    """argparse's nargs='+' alone keeps the last occurrence only: ``--folds 0 1 --folds 2`` scored fold 2 alone."""
    assert getattr(cli.build_parser().parse_args(argv), dest) == expected


def test_cv_refuses_a_fold_given_twice(tmp_path: Path) -> None:
    from pipeline.evaluation.crossval import cross_validation_summary

    (tmp_path / "datalist.json").write_text("{}")
    (tmp_path / "fold_0" / "models").mkdir(parents=True)
    (tmp_path / "fold_0" / "models" / "model.pt").write_bytes(b"")
    with pytest.raises(UserError, match=r"--folds \[0, 0\]: fold\(s\) \[0\] given twice; give each fold once"):
        cross_validation_summary(tmp_path, folds=[0, 0])
    assert not (tmp_path / "cv").exists()


@pytest.mark.parametrize("folds", ["1", "0", "-3", "two"])
def test_datalist_refuses_fewer_than_two_folds_in_one_line(folds: str, tiny_dataset: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["datalist", str(tiny_dataset), "--out", str(tmp_path / "d.json"), "--folds", folds])
    assert exit_.value.code == 2
    assert "argument --folds: --folds must be" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "d.json").exists()


@pytest.mark.parametrize(("verb", "line", "expected"), [
    pytest.param("train", "set --label_scheme brats2024 or pass --data_check skip",
                 "pass --set label_scheme brats2024 or pass --set data_check skip", id="train_set_ids"),
    pytest.param("train", "retrain with --overwrite true, or --resume true; --run_dir r --fold 2",
                 "retrain with --overwrite, or --resume; --run r --fold 2", id="train_own_options"),
    pytest.param("infer", "pass --tta false --output_dir o --dataset_dir d (--ckpt_path)",
                 "pass --no-tta -o o -i d (--set ckpt_path)", id="infer_own_options"),
    pytest.param("cv", "retrain with --overwrite true", "retrain with --set overwrite true", id="cv_sets_everything"),
    pytest.param("cv", "pass another --output_dir, or --overwrite true to replace them",
                 "move RUN_DIR/cv/seg aside to keep it (cv writes there), or --set overwrite true to replace them",
                 id="cv_output_folder_is_its_own"),
    pytest.param("cv", "one folder per dataset: pass --output_dir runs/r/seg_d (or another new folder)",
                 "one folder per dataset: move RUN_DIR/cv/seg aside to keep it (cv writes there)",
                 id="cv_output_folder_with_a_value"),
    pytest.param("cv", "refusing to overwrite the input x; choose another --output_dir", "refusing to overwrite the "
                 "input x; move RUN_DIR/cv/seg aside to keep it (cv writes there)", id="cv_choose_another_output"),
    pytest.param("cv", "the disk is full (--out, --output_dir, --run_dir)", "the disk is full (--set out, output_dir "
                 "(cv sets it: RUN_DIR/cv/seg), run_dir (cv sets it: RUN_DIR/fold_<f>))", id="cv_a_mere_mention"),
    pytest.param("cv", "with --run_dir of that run; pass --infer_fold 2", "with run_dir (cv sets it: "
                 "RUN_DIR/fold_<f>) of that run; pass --folds 2", id="cv_a_word_after_it_is_not_its_value"),
    pytest.param("cv", "(--datalist, --label_scheme)", "(datalist (cv sets it: RUN_DIR/datalist.json), label_scheme "
                 "(cv sets it: the folds' run.json))", id="cv_every_id_it_sets"),
    pytest.param("infer", "(python -m pipeline check DATA --label_scheme brats says so) pass --label_scheme brats",
                 "(python -m pipeline check DATA --label_scheme brats says so) pass --set label_scheme brats",
                 id="a_quoted_command_keeps_its_options"),
    pytest.param("demo", "pass --label_scheme brats", "pass --label_scheme brats", id="not_a_verb"),
])
def test_a_bundle_refusal_under_a_verb_is_spelled_with_the_verbs_options(verb: str, line: str, expected: str) -> None:
    from pipeline.commands import verb_spelling

    assert verb_spelling(line, verb) == expected


@pytest.mark.parametrize(("argv", "named"), [
    pytest.param(["synth", "{tmp}/d", "--layout", "brats2021", "--rc"], "rc (a resection cavity", id="synth_rc"),
    pytest.param(["synth", "{tmp}/d", "--layout", "nnunet", "--channels", "T1", "T1"], "channels ['T1', 'T1']",
                 id="synth_channel_twice"),
    pytest.param(["synth", "{tmp}/d", "--cases", "-1"], "cases must be >= 0", id="synth_cases"),
    pytest.param(["synth", "{tmp}/d", "--shape", "4", "4", "4"], "shape must be three integers", id="synth_shape"),
    pytest.param(["plot", "curves", "{tmp}/missing.csv"], "does not exist", id="plot_missing_table"),
    pytest.param(["plot", "curves", "{tmp}"], "is a folder: pass", id="plot_a_folder"),
    pytest.param(["plot", "curves", "{tmp}/empty.csv"], "has no epoch yet", id="plot_an_empty_history"),
])
def test_bad_input_to_the_small_commands_is_one_line(argv: list[str], named: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.csv").write_text("epoch,loss,lr\n")  # a history.csv before its first epoch
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and named in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(("argv", "named"), [
    pytest.param(["synth", "{afile}", "--cases", "1"], "a file of that name is in the way", id="synth_into_a_file"),
    pytest.param(["datalist", "{data}", "--out", "{afile}/x.json"], "is a file, not a folder",
                 id="datalist_under_a_file"),
    pytest.param(["datalist", "{data}", "--out", "{tmp}"], "is a folder: a datalist is a file",
                 id="datalist_onto_a_folder"),
    pytest.param(["evaluate", "{pred}", "{data}", "--out", "{afile}"], "{afile}", id="evaluate_into_a_file"),
    pytest.param(["compare", "{data}", "{pred}", "{pred2}", "--names", "a", "b", "--out", "{afile}"],
                 "is a file, not a folder", id="compare_into_a_file"),
    pytest.param(["plot", "boxplot", "{tmp}/m.csv", "--out", "{tmp}/x.json"], "a picture is written as one of",
                 id="plot_as_json"),
    pytest.param(["plot", "boxplot", "{tmp}/m.csv", "--out", "{apicture}"], "{apicture} exists",
                 id="boxplot_over_another_picture"),
    pytest.param(["plot", "curves", "{tmp}/history.csv", "--out", "{apicture}"], "{apicture} exists",
                 id="curves_over_another_picture"),
    pytest.param(["plot", "curves", "{tmp}/history.csv", "--out", "{data}/curves.png"],
                 "lies inside the dataset folder {data}", id="curves_into_a_dataset"),
    pytest.param(["plot", "boxplot", "{tmp}/m.csv", "--out", "{data}/{case}/box.png"],
                 "lies inside the dataset folder {data}", id="boxplot_into_a_case_folder"),
    pytest.param(["evaluate", "{pred}", "{data}", "--out", "{other}/eval"], "lies inside the dataset folder {other}",
                 id="evaluate_into_another_dataset"),
])
def test_an_output_path_that_cannot_be_written_is_one_line(argv: list[str], named: str, tiny_dataset: Path,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    afile = tmp_path / "afile"
    afile.write_text("mine")
    (tmp_path / "m.csv").write_text("case,region,dice\nc,WT,0.5\n")
    pred = tmp_path / "pred"
    pred.mkdir()
    for label in sorted(tiny_dataset.rglob("*_seg.nii.gz")):
        shutil.copy(label, pred / f"{label.parent.name}.nii.gz")
    apicture = tmp_path / "other_eval" / "dice_boxplot.png"  # another evaluation's picture
    apicture.parent.mkdir()
    apicture.write_bytes(b"\x89PNG theirs")
    (tmp_path / "history.csv").write_text("epoch,loss,lr\n1,0.5,0.001\n")
    pred2 = shutil.copytree(pred, tmp_path / "pred2")  # a second algorithm (one folder twice is refused first)
    other = tmp_path / "other_dataset"  # a dataset that is not an input of the command
    if "{other}" in " ".join(argv):
        shutil.copytree(tiny_dataset, other)
    values = {"afile": afile, "tmp": tmp_path, "data": tiny_dataset, "pred": pred, "pred2": pred2,
              "apicture": apicture, "other": other, "case": sorted(p.name for p in tiny_dataset.iterdir())[0]}
    before = sorted(tiny_dataset.rglob("*"))
    assert cli.main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and named.format(**values) in err[-1], err[-1]
    assert afile.read_text() == "mine" and apicture.read_bytes() == b"\x89PNG theirs"
    assert sorted(tiny_dataset.rglob("*")) == before and not (other / "eval").exists()


@pytest.mark.parametrize("what", ["curves", "boxplot"])
def test_plot_replaces_an_existing_picture_when_asked_by_name(what: str, tmp_path: Path) -> None:
    table = tmp_path / ("history.csv" if what == "curves" else "metrics.csv")
    table.write_text("epoch,loss,lr\n1,0.5,0.001\n2,0.4,0.001\n" if what == "curves"
                     else "case,region,dice\nc,WT,0.5\nc,TC,0.4\nc,ET,0.3\n")
    picture = tmp_path / "slides" / "figure.png"
    picture.parent.mkdir()
    picture.write_bytes(b"\x89PNG theirs")
    assert cli.main(["plot", what, str(table), "--out", str(picture), "--overwrite"]) == 0
    assert picture.read_bytes()[:4] == b"\x89PNG" and picture.read_bytes() != b"\x89PNG theirs"


def test_evaluate_from_inside_the_prediction_folder_writes_beside_it(tiny_dataset: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    pred = tmp_path / "pred"
    pred.mkdir()
    for label in sorted(tiny_dataset.rglob("*_seg.nii.gz")):
        shutil.copy(label, pred / f"{label.parent.name}.nii.gz")
    monkeypatch.chdir(pred)
    assert cli.main(["evaluate", ".", str(tiny_dataset), "--no-pictures"]) == 0
    assert (tmp_path / "pred_eval" / "summary.json").is_file()
