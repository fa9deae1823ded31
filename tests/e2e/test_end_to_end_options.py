"""Bundle options end to end: MLflow tracking offline, TTA and post-processing ids, a fold ensemble, DynUNet with
deep supervision."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import TINY_ARGS as TINY
from tests.helpers import cli_args, cli_overrides, run_bundle


def _bundle(run_id: str, *args: str):  # noqa: ANN202
    return run_bundle(run_id, cli_overrides(args))


@pytest.fixture(scope="module")
def tracked_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mlflow")
    run = tmp_path_factory.mktemp("tracked")
    _bundle("training", "--dataset_dir", str(tiny_dataset), "--run_dir", str(run), "--folds", "2",
            "--epochs", "2", "--val_interval", "1", "--batch_size", "1", "--tracking", "mlflow", *TINY)
    return run


def test_training_writes_history_curves_and_tensorboard_events(tracked_run: Path) -> None:
    assert (tracked_run / "history.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert (tracked_run / "progress.png").stat().st_size > 5000
    assert list((tracked_run / "tensorboard").glob("events.out.tfevents.*"))


def test_mlflow_tracking_records_the_run_in_a_local_store(tracked_run: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracked_run / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("brats")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert "val_mean_dice" in runs[0].data.metrics


def test_tracked_inference_records_in_the_runs_store_and_leaves_the_segmentation_folder_clean(
        tiny_dataset: Path, tracked_run: Path) -> None:
    import mlflow

    out = tracked_run / "seg_tracked"
    _infer(tiny_dataset, tracked_run, out, "--tracking", "mlflow")
    assert sorted(p.name for p in out.glob("*.nii.gz"))
    assert not [p.name for p in out.iterdir() if p.name.startswith(("config_", "mlruns"))]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracked_run / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("brats").experiment_id])
    assert len(runs) == 2  # the training run and this inference


def _infer(tiny_dataset: Path, run: Path, out: Path, *extra: str, ensemble: bool = False) -> None:
    run_bundle("inference", cli_overrides(["--dataset_dir", str(tiny_dataset), "--run_dir", str(run), "--output_dir",
                                           str(out), *TINY, *extra]), ensemble=ensemble)


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


def test_ensemble_of_identical_folds_equals_the_single_model(tiny_dataset: Path, tracked_run: Path) -> None:
    for fold in (0, 1):
        dest = tracked_run / f"fold_{fold}" / "models"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(tracked_run / "models" / "model.pt", dest / "model.pt")
    _infer(tiny_dataset, tracked_run, tracked_run / "seg_single")
    _infer(tiny_dataset, tracked_run, tracked_run / "seg_ensemble", "--ensemble_folds", "[0,1]",
           ensemble=True)
    single, ensemble = _labels(tracked_run / "seg_single"), _labels(tracked_run / "seg_ensemble")
    assert single.keys() == ensemble.keys() and len(single) == 4
    assert not (tracked_run / "ensemble").exists()  # the folds are combined in memory: the run folder is an input
    for name in single:
        np.testing.assert_array_equal(ensemble[name], single[name])


def test_tta_and_post_processing_ids_run_and_write_every_case(tiny_dataset: Path, tracked_run: Path) -> None:
    out = tracked_run / "seg_tta"
    _infer(tiny_dataset, tracked_run, out, "--tta", "true", "--min_component_size", "10", "--min_et_voxels", "50")
    labels = _labels(out)
    assert len(labels) == 4 and all(set(np.unique(v)) <= {0, 1, 2, 4} for v in labels.values())


def test_an_ensemble_scoring_a_fold_one_of_its_models_trained_on_is_refused(tiny_dataset: Path, tracked_run: Path,
                                                                            tmp_path: Path) -> None:
    import json

    record = json.loads((tracked_run / "run.json").read_text())  # fold 0 validates, fold 1 trains
    swapped = {**record, "ids": {**record["ids"], "fold": 1},
               "split": {"train": record["split"]["validation"], "validation": record["split"]["train"]}}
    cv = tmp_path / "cv"
    for fold, rec in ((0, record), (1, swapped)):  # the two fold models of a cross-validation
        (cv / f"fold_{fold}" / "models").mkdir(parents=True)
        shutil.copy(tracked_run / "models" / "model.pt", cv / f"fold_{fold}" / "models" / "model.pt")
        (cv / f"fold_{fold}" / "run.json").write_text(json.dumps(rec))
    result = run_bundle("inference", cli_overrides([
        "--datalist", str(tracked_run / "datalist.json"), "--infer_fold", "0", "--run_dir", str(cv),
        "--output_dir", str(tmp_path / "seg"), "--ensemble_folds", "[0,1]", *TINY]), ensemble=True, check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --infer_fold 0: the models of fold(s) 1 of this ensemble trained on cases"), last
    assert "make cv-summary" in last and not (tmp_path / "seg").exists()


def test_dynunet_with_deep_supervision_trains_validates_and_segments(tiny_dataset: Path, tmp_path: Path) -> None:
    """The DynUNet overlay (nnU-Net's deep supervision on) through training, its validation (the network in
    evaluation mode gives one output) and inference, which rebuilds it, heads and all, from run.json."""
    import json

    run = tmp_path / "dynunet"
    tiny_dynunet = {"dynunet_strides": "[[1,1,1],[2,2,2],[2,2,2],[2,2,2]]", "network_factory#filters": [8, 8, 16, 16]}
    run_bundle("training", cli_overrides([*TINY, *cli_args(tiny_dynunet), "--dataset_dir", str(tiny_dataset),
                                          "--run_dir", str(run), "--folds", "2", "--epochs", "1", "--batch_size", "1"]),
               network="dynunet")
    assert json.loads((run / "run.json").read_text())["network"]["deep_supervision"] is True
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 2 and "val_mean_dice" in history[0]
    _infer(tiny_dataset, run, run / "seg")
    labels = _labels(run / "seg")
    assert len(labels) == 4 and all(set(np.unique(v)) <= {0, 1, 2, 4} for v in labels.values())
