"""Fold ensembles: the mean probability of the folds' networks, their checkpoints combined in memory (nothing written
into the run folder, an input of inference)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.inference.ensemble import ProbabilityEnsemble, ensemble_of, ensemble_state, fold_checkpoint


def test_ensemble_is_the_mean_probability_of_its_members() -> None:
    torch.manual_seed(0)
    nets = [torch.nn.Conv3d(4, 3, 1) for _ in range(3)]
    x = torch.randn(2, 4, 3, 3, 3)
    with torch.no_grad():
        got = torch.sigmoid(ProbabilityEnsemble(nets)(x))
        expected = sum(torch.sigmoid(n(x)) for n in nets) / 3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_folds_checkpoints_load_each_into_its_member_and_nothing_is_written(tmp_path: Path) -> None:
    template = torch.nn.Conv3d(4, 3, 1)
    folds = [0, 2]
    members = [torch.nn.Conv3d(4, 3, 1) for _ in folds]
    for f, m in zip(folds, members, strict=True):
        fold_checkpoint(tmp_path, f).parent.mkdir(parents=True)
        torch.save(m.state_dict(), fold_checkpoint(tmp_path, f))
    ensemble = ensemble_of(template, len(folds))
    from pipeline.inference.ensemble import load_ensemble

    before = sorted(tmp_path.rglob("*"))
    load_ensemble(ensemble, tmp_path, folds)
    for i, m in enumerate(members):
        assert torch.equal(ensemble.networks[i].weight, m.weight)
    assert sorted(tmp_path.rglob("*")) == before


def test_the_ensemble_is_identified_by_its_folds_files_in_order(tmp_path: Path) -> None:
    """The model_id (the hash that lets a second run skip the cases this model already segmented) is the folds'
    checkpoints': the same folds give the same model, another fold list or order another."""
    from pipeline.inference.ensemble import ensemble_checkpoints
    from pipeline.model.weights import model_id

    for f in (0, 1, 2):
        fold_checkpoint(tmp_path, f).parent.mkdir(parents=True)
        torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), fold_checkpoint(tmp_path, f))
    first = model_id(ensemble_checkpoints(tmp_path, [0, 1]))
    assert first is not None and model_id(ensemble_checkpoints(tmp_path, [0, 1])) == first
    assert model_id(ensemble_checkpoints(tmp_path, [1, 0])) != first
    assert model_id(ensemble_checkpoints(tmp_path, [0, 2])) != first
    assert model_id(ensemble_checkpoints(tmp_path, [0, 3])) is None  # a fold without a model: load_ensemble says why


@pytest.mark.parametrize("loader", ["one_model", "fold_ensemble"])
def test_the_model_id_names_the_weights_loaded_not_a_model_saved_since(tmp_path: Path, loader: str) -> None:
    """Inference loaded model.pt, then hashed it again for the model id: training saving a new best in between
    credited the segmentations to weights that never made them, and a later inference skipped them as done."""
    from pipeline.inference.ensemble import ensemble_checkpoints, load_ensemble
    from pipeline.model.weights import load_weights, model_id

    for f in (0, 1):
        fold_checkpoint(tmp_path, f).parent.mkdir(parents=True)
        torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), fold_checkpoint(tmp_path, f))
    files = [fold_checkpoint(tmp_path, 0)] if loader == "one_model" else ensemble_checkpoints(tmp_path, [0, 1])
    before = model_id(files if loader == "fold_ensemble" else files[0])
    if loader == "one_model":
        load_weights(torch.nn.Conv3d(4, 3, 1), files[0])
    else:
        load_ensemble(ProbabilityEnsemble([torch.nn.Conv3d(4, 3, 1) for _ in files]), tmp_path, [0, 1])
    torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), fold_checkpoint(tmp_path, 0))  # training's next best
    assert model_id(files if loader == "fold_ensemble" else files[0]) == before
    if loader == "one_model":  # loaded again (the next inference): the new weights, a new id
        load_weights(torch.nn.Conv3d(4, 3, 1), files[0])
        assert model_id(files[0]) != before


@pytest.mark.parametrize("folds", [[0, 1, 2], "[0, 1, 2]", "0,1,2"], ids=["list", "text", "comma_text"])
def test_the_bundle_loads_the_folds_it_is_given_in_their_order(tmp_path: Path, folds) -> None:
    from pipeline.inference.ensemble import ensemble_checkpoints
    from tests.helpers import parse_bundle

    members = {f: torch.nn.Conv3d(4, 3, 1) for f in (0, 1, 2, 3)}
    for f, m in members.items():
        fold_checkpoint(tmp_path, f).parent.mkdir(parents=True)
        torch.save(m.state_dict(), fold_checkpoint(tmp_path, f))
    state = ensemble_state(tmp_path, [0, 1, 2])
    assert all(torch.equal(state[f"networks.{i}.weight"], members[f].weight) for i, f in enumerate((0, 1, 2)))
    parser = parse_bundle("inference", {"run_dir": str(tmp_path), "ensemble_folds": folds}, ensemble=True)
    assert parser.get_parsed_content("ckpt_path") == ensemble_checkpoints(tmp_path, [0, 1, 2])


def test_ensemble_names_the_fold_without_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"fold 3: .*fold_3/models/model.pt"):
        ensemble_state(tmp_path, [3])


def test_an_ensemble_of_folds_trained_with_different_networks_is_refused(tmp_path: Path) -> None:
    import json

    for f, channels in ((0, [8, 16]), (1, [16, 32])):
        ckpt = fold_checkpoint(tmp_path, f)
        ckpt.parent.mkdir(parents=True)
        torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), ckpt)
        record = {"network": {"_target_": "UNet", "channels": channels}}
        (ckpt.parent.parent / "run.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"fold 1 .* another network than fold 0 \(channels: \[8, 16\] -> \[16, 32\]"):
        ensemble_state(tmp_path, [0, 1])
    assert not (tmp_path / "ensemble").exists()


@pytest.mark.parametrize(("other", "named"), [
    pytest.param({"spacing": [2, 2, 2]}, "spacing: None -> [2.0, 2.0, 2.0]", id="another_grid"),
    pytest.param({"channels": ["flair", "t1", "t1ce", "t2"]}, "channels: ['T1', 'T1ce', 'T2', 'FLAIR'] -> ",
                 id="another_channel_order"),
    pytest.param({"label_scheme": "brats2024"}, "regions: ['TC', 'WT', 'ET'] -> ['WT', 'TC', 'ET', 'RC']",
                 id="other_regions"),
    pytest.param({"label_scheme": "brats2023", "channels": ["t1n", "t1c", "t2w", "t2f"]}, None,
                 id="same_regions_and_channels_in_another_naming"),
    pytest.param({"normalization": "percentile"}, "normalization: 'zscore' -> 'percentile'",
                 id="another_normalization"),
    pytest.param({"preprocessing": {"crop_foreground::margin": 4}, "normalization": "zscore"},
                 "preprocessing: {} -> {'crop_foreground::margin': 4}", id="another_preprocessing_override"),
])
def test_an_ensemble_of_folds_that_take_or_give_other_data_is_refused(tmp_path: Path, other: dict,
                                                                      named: str | None) -> None:
    import json

    base = {"label_scheme": "brats", "channels": ["t1", "t1ce", "t2", "flair"], "spacing": None}
    for f, ids in ((0, base), (1, {**base, **other})):
        ckpt = fold_checkpoint(tmp_path, f)
        ckpt.parent.mkdir(parents=True)
        torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), ckpt)
        (ckpt.parent.parent / "run.json").write_text(json.dumps({"network": {"_target_": "UNet"}, "ids": ids}))
    if named is None:
        assert set(ensemble_state(tmp_path, [0, 1])) == {"networks.0.weight", "networks.0.bias", "networks.1.weight",
                                                         "networks.1.bias"}
        return
    with pytest.raises(UserError, match=r"fold 1 .* takes or gives other data than fold 0 \(.*" + re.escape(named)):
        ensemble_state(tmp_path, [0, 1])
    assert not (tmp_path / "ensemble").exists()


@pytest.mark.parametrize(("folds", "infer_fold", "refused"), [
    pytest.param([0, 1], 0, "fold(s) 1 of this ensemble", id="fold_0_trained_fold_1"),
    pytest.param([0, 1], 1, "fold(s) 0 of this ensemble", id="fold_1_trained_fold_0"),
    pytest.param([0], 0, None, id="one_fold_on_its_own_validation_fold"),
    pytest.param([0, 1], None, None, id="every_case_without_a_fold"),
])
def test_an_ensemble_holds_a_fold_out_only_if_none_of_its_models_trained_on_it(tmp_path: Path, folds, infer_fold,
                                                                              refused) -> None:
    import json

    from pipeline.inference.ensemble import check_ensemble_held_out
    from pipeline.model.record import RunError

    cases = {0: ["A", "B"], 1: ["C", "D"]}
    for f in (0, 1):
        fold_checkpoint(tmp_path, f).parent.mkdir(parents=True)
        split = {"train": cases[1 - f], "validation": cases[f]}
        (tmp_path / f"fold_{f}" / "run.json").write_text(json.dumps({"ids": {"fold": f}, "split": split}))
    items = [{"case": c} for c in cases.get(infer_fold, cases[0])]
    if refused is None:
        check_ensemble_held_out(tmp_path, folds, items, infer_fold)
        return
    with pytest.raises(RunError, match=rf"^--infer_fold {infer_fold}: the models of {re.escape(refused)}"):
        check_ensemble_held_out(tmp_path, folds, items, infer_fold)


@pytest.mark.parametrize(("a", "b", "same"), [
    pytest.param({"min_tumour_fraction": 0}, {"min_tumour_fraction": "0.0"}, True, id="one_number_spelt_twice"),
    pytest.param({"tta": "true"}, {"tta": True}, True, id="a_flag_as_text"),
    pytest.param({"spacing": [2, 2, 2]}, {"spacing": None}, False, id="another_grid"),
    pytest.param({"precision": "off"}, {"precision": "cpu bf16"}, False, id="another_precision"),
    pytest.param({"sw_mode": "gaussian"}, {"sw_mode": "constant"}, False, id="another_window_blending"),
    pytest.param({"labels": {"labels": {"ET": 3}}}, {"labels": {"labels": {"ET": 4}}}, False, id="another_numbering"),
])
def test_the_model_id_is_one_per_meaning_of_the_settings(tmp_path: Path, a: dict, b: dict, same: bool) -> None:
    from pipeline.model.weights import model_id

    ckpt = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, ckpt)
    assert (model_id(ckpt, **a) == model_id(ckpt, **b)) is same


def _fold_run(run_dir: Path, fold: int, config_files: list[str]) -> None:
    import json

    ckpt = fold_checkpoint(run_dir, fold)
    ckpt.parent.mkdir(parents=True)
    torch.save(torch.nn.Conv3d(4, 3, 1).state_dict(), ckpt)
    ids = {"label_scheme": "brats", "channels": ["t1", "t1ce", "t2", "flair"], "spacing": None}
    (ckpt.parent.parent / "run.json").write_text(json.dumps({"network": {"_target_": "UNet"}, "ids": ids,
                                                             "config_files": config_files}))


BUDGET_FILES = ["/x/configs/common.yaml", "/x/configs/train.yaml", "/x/configs/variants/fast.yaml",
                "/x/configs/variants/budget.yaml"]


def test_an_ensemble_of_folds_trained_with_other_recipes_is_refused(tmp_path: Path) -> None:
    """A budget fold and a plain one: one inference list cannot apply both recipes' post-processing."""
    _fold_run(tmp_path, 0, BUDGET_FILES)
    _fold_run(tmp_path, 1, BUDGET_FILES[:2])
    with pytest.raises(UserError, match=r"fold 1 .* other data than fold 0 \(recipe: \['fast.yaml', 'budget.yaml'\] "
                                        r"-> \[\]"):
        ensemble_state(tmp_path, [0, 1])


def test_the_ensembles_inference_list_is_the_folds_recipe_with_the_ensemble_overlay(tmp_path: Path) -> None:
    """`make infer-ensemble` built its list from the Makefile's variables: folds trained with --minutes lost the
    budget recipe's post-processing there; it now reads the folds' run.json, as `pipeline cv` does."""
    import subprocess
    import sys

    from pipeline.bundle import CONFIGS, VARIANTS, config_list, inference_files

    _fold_run(tmp_path, 0, [*BUDGET_FILES, "/x/configs/variants/demo.yaml"])
    files = inference_files(tmp_path / "fold_0", ensemble=True)
    assert [Path(f).name for f in files] == ["common.yaml", "inference.yaml", "fast.yaml", "budget.yaml",
                                             "ensemble.yaml", "demo.yaml"]
    assert files[4] == str(CONFIGS / VARIANTS["ensemble"])  # /x/configs is not there: this install's stand in
    printed = subprocess.run([sys.executable, "-m", "pipeline.bundle", "configs", "inference", "--ensemble", "--run",
                              str(tmp_path / "fold_0")], capture_output=True, text=True, check=True).stdout.strip()
    assert printed == config_list(files)


@pytest.mark.parametrize("reader", ["fold_ensemble", "cross_validation_table"])
@pytest.mark.parametrize("holder_alive", [True, False], ids=["training_runs", "training_was_killed"])
def test_a_fold_still_training_is_not_read_as_a_trained_model(tmp_path: Path, reader: str,
                                                              holder_alive: bool) -> None:
    """`make cv-summary` while fold 1 still trained wrote its best-so-far model's table as the fold's, unmarked."""
    import json
    import socket
    import subprocess
    import sys

    from pipeline.evaluation.crossval import cross_validation_summary

    for f in (0, 1):
        _fold_run(tmp_path, f, BUDGET_FILES)
    (tmp_path / "datalist.json").write_text("{}")
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        if not holder_alive:
            trainer.kill()
            trainer.wait()
        (tmp_path / "fold_1" / ".lock").write_text(json.dumps({"pid": trainer.pid, "host": socket.gethostname(),
                                                               "what": "training"}))
        read = ((lambda: ensemble_state(tmp_path, [0, 1])) if reader == "fold_ensemble" else
                (lambda: cross_validation_summary(tmp_path, tmp_path / "no_data", folds=[0, 1])))
        if holder_alive:
            with pytest.raises(UserError, match=rf"fold_1 is still being trained \(pid {trainer.pid} on host"):
                read()
            assert not (tmp_path / "ensemble").exists() and not (tmp_path / "cv_summary.json").exists()
        elif reader == "fold_ensemble":
            assert read()  # a killed training's lock holds nothing
        else:  # past the lock, the table goes on to read the data (none here: refused for that, not the lock)
            with pytest.raises(Exception) as err:  # noqa: PT011 - any refusal but the lock's
                read()
            assert "still being trained" not in str(err.value)
    finally:
        trainer.kill()


def _dataset_json(folder: Path, channels: list[str], rc: bool = False) -> str:
    from pipeline.data.synthetic import nnunet_dataset_json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(nnunet_dataset_json(channels, rc=rc)))
    return f"nnunet:{folder / 'dataset.json'}"


@pytest.mark.parametrize(("other", "same"), [
    pytest.param(lambda tmp: _dataset_json(tmp / "copy", ["t1", "t1ce", "t2", "flair"]), True,
                 id="the_dataset_copied_elsewhere"),
    pytest.param(lambda tmp: _dataset_json(tmp / "reordered", ["flair", "t1", "t1ce", "t2"]), True,
                 id="its_channels_listed_in_another_order"),
    pytest.param(lambda tmp: _dataset_json(tmp / "rc", ["t1", "t1ce", "t2", "flair"], rc=True), False,
                 id="another_numbering"),
    pytest.param(lambda tmp: "brats2023", False, id="a_built_in_scheme"),
])
def test_a_dataset_json_schemes_model_id_is_its_numbering_not_its_place(other, same: bool, tmp_path: Path) -> None:
    """The same checkpoint segmenting a copied nnU-Net dataset was taken for another model (its id hashed the
    dataset.json's path and channel order): its outputs were refused as another's."""
    from pipeline.data.labels import describe
    from pipeline.model.weights import model_id, numbering_settings

    ckpt = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, ckpt)
    first = _dataset_json(tmp_path / "data", ["t1", "t1ce", "t2", "flair"])
    second = other(tmp_path)
    ids = [model_id(ckpt, **numbering_settings(s, describe(s))) for s in (first, second)]
    assert (ids[0] == ids[1]) is same
    assert numbering_settings("brats", describe("brats")) == {"scheme": "brats",
                                                              "labels": describe("brats").to_dataset_json()}
