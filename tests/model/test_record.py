"""A run remembers what it is and is never silently replaced (pipeline.runs, pipeline.inference guards), and
the paths a busy user walks through the MONAI CLI end with one clear line and nothing lost."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.networks.nets import DynUNet, UNet

from pipeline.bundle import next_command
from pipeline.core.errors import UserError
from pipeline.core.files import release_held_folders
from pipeline.data.source import DataSource
from pipeline.model.network import NetworkError, recorded_network
from pipeline.model.record import RunError, read_record, record_split, run_ids, start_training
from pipeline.model.weights import WeightsError, load_weights
from tests.helpers import CONFIGS, REPO, TINY_ARGS, cli_overrides, run_bundle

SMALL = functools.partial(UNet, spatial_dims=3, in_channels=4, out_channels=3, channels=[4, 8], strides=[2],
                          num_res_units=0)
OTHER = functools.partial(UNet, spatial_dims=3, in_channels=4, out_channels=3, channels=[8, 16], strides=[2],
                          num_res_units=0)


def _ids(**change: object) -> dict:
    return {**run_ids(DataSource("/data/BraTS", label_scheme="brats"), fold=0, roi_size=[32, 32, 32]), **change}


def _start(run: Path, *, resume: bool = False, overwrite: bool = False, factory=SMALL, **change: object) -> dict:
    return start_training(run, run / "models", resume=resume, overwrite=overwrite, ids=_ids(**change),
                          network_factory=factory)


def _finish(run: Path) -> None:
    """What training leaves behind: the checkpoints; and the lock released as at the end of the process."""
    (run / "models").mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "model_last.pt", "checkpoint.pt"):
        torch.save(SMALL().state_dict(), run / "models" / name)
    release_held_folders()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_run_record_holds_the_ids_the_network_and_the_split(tmp_path):
    run = tmp_path / "run"
    _start(run)
    split = ([{"case": "a"}, {"case": "b"}], [{"case": "c"}])
    assert record_split(run, split) is split
    record = read_record(run)
    assert record["ids"]["fold"] == 0 and record["ids"]["roi_size"] == [32, 32, 32]
    assert record["network"]["_target_"].endswith("UNet") and record["network"]["channels"] == [4, 8]
    assert record["split"] == {"train": ["a", "b"], "validation": ["c"]}
    assert json.loads((run / "datalist.json").read_text())["training"] == [*split[0], *split[1]]


def test_training_into_a_finished_run_is_refused_and_leaves_it_intact(tmp_path):
    run = tmp_path / "run"
    _start(run)
    _finish(run)
    before = {p.name: _sha(p) for p in (run / "models").iterdir()}
    with pytest.raises(RunError, match="already holds a run .*--resume true.*--overwrite true"):
        _start(run)
    assert {p.name: _sha(p) for p in (run / "models").iterdir()} == before


@pytest.mark.parametrize("where", ["own", "shared", "the run folder"],
                         ids=["the run's own logs", "a log folder shared with other runs", "the run folder itself"])
def test_overwrite_deletes_the_old_runs_tensorboard_events_only_in_its_own_folder(tmp_path, where):
    """--overwrite kept the old events.out.tfevents files, and TensorBoard drew the old curves beside the new run's
    at the same steps; a folder outside the run may hold other runs' logs, and the run folder itself holds its folds'
    folders (make cv), so both are left alone."""
    run = tmp_path / "run"
    logs = {"own": run / "tensorboard", "shared": tmp_path / "shared_logs", "the run folder": run}[where]
    inside = where == "own"
    start = functools.partial(start_training, run, run / "models", resume=False, ids=_ids(), network_factory=SMALL,
                              folders={"tensorboard_dir": logs})
    start(overwrite=False)
    _finish(run)
    logs.mkdir(parents=True, exist_ok=True)
    event = logs / "events.out.tfevents.1.host"
    event.write_bytes(b"old curves")
    (run / "fold_0").mkdir()
    fold_event = run / "fold_0" / "events.out.tfevents.2.host"
    fold_event.write_bytes(b"a fold's curves")
    start(overwrite=True)
    assert event.exists() != inside and fold_event.exists()


@pytest.mark.parametrize("moved", [False, True], ids=["models in the recorded ckpt_dir", "that folder moved away"])
def test_a_run_whose_models_lie_in_its_recorded_ckpt_dir_is_not_replaced(tmp_path, moved):
    """A run trained with --ckpt_dir elsewhere: a second start with the default ckpt_dir found no model beside the
    record and replaced run.json (split, network, the models' folder). The record's folder is looked in too."""
    run, models = tmp_path / "run", tmp_path / "big" / "models"
    start_training(run, models, resume=False, overwrite=False, ids=_ids(), network_factory=SMALL)
    models.mkdir(parents=True, exist_ok=True)  # (held by the start: made)
    torch.save(SMALL().state_dict(), models / "model.pt")
    release_held_folders()
    before = (run / "run.json").read_text()
    if moved:  # nothing left to protect: the record is that of a run without models, replaced as before
        (models / "model.pt").unlink()
        _start(run)
        assert read_record(run)["ckpt_dir"] == str((run / "models").resolve())
        return
    with pytest.raises(RunError, match=f"names its models in {models}.*trained with --ckpt_dir {models}, pass that "
                                       "--ckpt_dir with --resume true.*a copy of another run's"):
        _start(run)
    assert (run / "run.json").read_text() == before and (models / "model.pt").exists()
    release_held_folders()
    _start(run, overwrite=True)  # asked for by name: a new record here; models outside this ckpt_dir are never deleted
    assert (models / "model.pt").exists() and read_record(run)["ckpt_dir"] == str((run / "models").resolve())


def test_overwriting_a_copied_run_never_deletes_the_originals_models(tmp_path):
    """A run folder copied elsewhere keeps a record naming the original's models folder: --overwrite on the copy
    deleted the original run's models (found in the suite: a copied fixture run lost its model.pt)."""
    import shutil

    original = tmp_path / "original"
    _start(original)
    _finish(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    for path in (copy / "models").iterdir():
        path.unlink()  # the copy's own models gone (or never copied)
    start_training(copy, copy / "models", resume=False, overwrite=True, ids=_ids(), network_factory=SMALL)
    release_held_folders()
    assert sorted(p.name for p in (original / "models").iterdir()) == ["checkpoint.pt", "model.pt", "model_last.pt"]


def test_overwrite_by_name_deletes_the_old_checkpoints(tmp_path):
    run = tmp_path / "run"
    _start(run)
    _finish(run)
    _start(run, overwrite=True)
    assert not list((run / "models").iterdir())


def test_overwrite_after_the_data_check_deletes_nothing_until_the_split_is_recorded(tmp_path):
    """train.yaml's start: --overwrite's deletions and the new run.json wait for record_split, which runs after the
    data check; a start refused in between leaves the finished run as it was."""
    run = tmp_path / "run"
    _start(run)
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    _finish(run)
    before = {p.name: p.read_bytes() for p in [run / "run.json", *(run / "models").iterdir()]}
    started = start_training(run, run / "models", resume=False, overwrite=True, ids=_ids(seed=4),
                             network_factory=SMALL, after_data_check=True)
    assert {p.name: p.read_bytes() for p in [run / "run.json", *(run / "models").iterdir()]} == before
    record_split(run, ([{"case": "c"}], [{"case": "d"}]), started=started)
    assert not list((run / "models").iterdir())
    assert read_record(run)["ids"]["seed"] == 4 and read_record(run)["split"]["train"] == ["c"]


def test_a_checkpoint_folder_outside_the_run_is_written_by_one_training_at_a_time(tmp_path):
    """Two runs given one --ckpt_dir wrote each other's model.pt (and a start's clean-up removed the other's
    half-written checkpoint): the models' folder is held like the run folder."""
    from tests.helpers import locked_by_another_process

    models = tmp_path / "shared_models"
    with locked_by_another_process(models, "training (its models)") as pid, pytest.raises(
            UserError, match=f"{models} is being written by another process \\(pid {pid}"):
        start_training(tmp_path / "run_b", models, resume=False, overwrite=False, ids=_ids(), network_factory=SMALL)
    release_held_folders()  # as the refused process's exit does
    assert not (tmp_path / "run_b").exists()  # refused before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(("device", "named"), [
    pytest.param("cuda", "no CUDA GPU", id="cuda_absent"),
    pytest.param("cuda:1", "no CUDA GPU", id="a_cuda_index_absent"),
    pytest.param("gpu", "not a device torch knows", id="a_name_torch_does_not_know"),
])
def test_a_device_this_machine_lacks_is_refused_before_the_run_folder_is_touched(tmp_path, device, named):
    run = tmp_path / "run"
    with pytest.raises(UserError, match=f"--device {device}: .*{named}"):
        start_training(run, run / "models", resume=False, overwrite=False, ids=_ids(), network_factory=SMALL,
                       device=device)
    assert not run.exists()


@pytest.mark.parametrize(("change", "named"), [
    pytest.param({"fold": 1}, "fold: 0 -> 1", id="another_fold"),
    pytest.param({"fold": "all"}, "fold: 0 -> 'all'", id="fold_all"),
    pytest.param({"seed": 3}, "seed: 0 -> 3", id="another_split_seed"),
    pytest.param({"dataset_dir": "/data/other"}, "dataset_dir: '/data/BraTS' -> '/data/other'", id="another_dataset"),
    pytest.param({"label_scheme": "brats2023"}, "label_scheme: 'brats' -> 'brats2023'", id="another_scheme"),
    pytest.param({"factory": OTHER}, "network channels: [4, 8] -> [8, 16]", id="another_network"),
])
def test_a_resume_with_other_settings_is_refused_naming_each_differing_id(tmp_path, change, named):
    run = tmp_path / "run"
    _start(run)
    _finish(run)
    with pytest.raises(RunError, match="--resume true") as err:
        _start(run, resume=True, **change)
    assert named in str(err.value)


@pytest.mark.parametrize("change", [pytest.param({"dataset_dir": "/data/fixed"}, id="another_dataset"),
                                    pytest.param({"fold": 2}, id="another_fold")])
def test_a_resume_without_a_checkpoint_starts_afresh_with_the_new_settings(tmp_path, change):
    """A start refused by the data check, or killed before its first checkpoint, leaves run.json and nothing to
    resume: a job script's --resume true with corrected settings starts afresh instead of being refused."""
    run = tmp_path / "run"
    _start(run)
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    started = _start(run, resume=True, **change)
    assert "split" not in started
    assert {k: read_record(run)["ids"][k] for k in change} == change
    assert record_split(run, ([{"case": "c"}], [{"case": "d"}]))  # the new split is recorded, not refused
    assert read_record(run)["split"] == {"train": ["c"], "validation": ["d"]}


def test_a_new_start_rewrites_the_split_file_an_unfinished_run_wrote_but_never_the_users(tmp_path):
    run = tmp_path / "run"
    _start(run)
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    _start(run, dataset_dir="/data/fixed")
    record_split(run, ([{"case": "c"}], [{"case": "d"}]))
    assert [it["case"] for it in json.loads((run / "datalist.json").read_text())["training"]] == ["c", "d"]
    user = tmp_path / "user_run"
    user.mkdir()
    (user / "datalist.json").write_text('{"training": []}')  # the user's own file in the run folder
    _start(user)
    record_split(user, ([{"case": "a"}], [{"case": "b"}]))
    assert (user / "datalist.json").read_text() == '{"training": []}'


def test_a_resume_with_the_same_settings_goes_on(tmp_path):
    run = tmp_path / "run"
    _start(run)
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    _finish(run)
    assert _start(run, resume=True)["split"] == {"train": ["a"], "validation": ["b"]}


def test_a_resume_whose_split_changed_is_refused_before_training_on_validation_cases(tmp_path):
    run = tmp_path / "run"
    _start(run)
    record_split(run, ([{"case": "a"}, {"case": "b"}], [{"case": "c"}]))
    _finish(run)
    _start(run, resume=True)
    with pytest.raises(RunError, match=r"validation cases changed \['a', 'c'\]"):
        record_split(run, ([{"case": "b"}, {"case": "c"}], [{"case": "a"}]))


def test_inference_builds_the_network_the_run_recorded(tmp_path):
    run = tmp_path / "run"
    _start(run, factory=OTHER)
    net = recorded_network(SMALL, read_record(run))  # the config says SMALL; the run was trained with OTHER
    assert net.model[0].conv.weight.shape[0] == 8


#: MONAI's DynUNet as the overlay trains it (deep supervision, one head), tiny
DEEP = functools.partial(DynUNet, spatial_dims=3, in_channels=4, out_channels=3, kernel_size=[[3, 3, 3]] * 4,
                         strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, upsample_kernel_size=[[2, 2, 2]] * 3,
                         filters=[4, 8, 8, 8], norm_name="instance", res_block=True, deep_supervision=True,
                         deep_supr_num=1)


@pytest.mark.parametrize("recorded", [True, False], ids=["from_run_json", "from_the_config"])
def test_inference_builds_a_deep_supervised_network_without_its_heads_and_loads_its_checkpoint(tmp_path, recorded):
    """The same output as the trained network in evaluation mode, from the same checkpoint (the heads' tensors
    left out), and a network TorchScript can script (MONAI 1.6.1's DynUNet with heads cannot: ckpt_export)."""
    run = tmp_path / "run"
    _start(run, factory=DEEP)
    torch.manual_seed(0)
    trained = DEEP()
    (run / "models").mkdir(parents=True)
    torch.save(trained.state_dict(), run / "models" / "model.pt")
    assert any(k.startswith("deep_supervision_heads.") for k in trained.state_dict())

    net = recorded_network(DEEP if not recorded else SMALL, read_record(run) if recorded else None)
    assert not net.deep_supervision and not any("deep_supervision_heads" in k for k in net.state_dict())
    load_weights(net, run / "models" / "model.pt")
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), trained.eval()(x))
        torch.testing.assert_close(torch.jit.script(net)(x), trained(x))


def test_a_checkpoint_missing_a_tensor_the_network_needs_is_still_refused(tmp_path):
    """Only training-only tensors the network lacks are left out; the rest of the check stands."""
    state = {k: v for k, v in DEEP().state_dict().items() if not k.startswith("output_block.")}
    torch.save(state, tmp_path / "model.pt")
    net = recorded_network(DEEP, None)
    with pytest.raises(WeightsError, match="2 missing, 0 unexpected"):
        load_weights(net, tmp_path / "model.pt")


@pytest.mark.parametrize(("content", "message"), [
    pytest.param(None, "no checkpoint at .*model.pt: train first", id="missing"),
    pytest.param(b"", "is empty \\(0 bytes\\).*model_last.pt.*--overwrite true", id="zero_bytes"),
    pytest.param("truncated", "cannot be read as a checkpoint.*model_last.pt.*--overwrite true", id="truncated"),
    pytest.param("other_network", "does not fit the network .*run.json.*differently shaped", id="another_network"),
])
def test_a_bad_checkpoint_names_the_file_and_the_way_out(tmp_path, content, message):
    run = tmp_path / "run"
    _start(run, factory=OTHER)
    path = run / "models" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "truncated":
        torch.save(SMALL().state_dict(), path)
        path.write_bytes(path.read_bytes()[:200])
    elif content == "other_network":
        torch.save(OTHER().state_dict(), path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        load_weights(SMALL(), path, record=read_record(run))


# ---- inference outputs ------------------------------------------------------------------------------------------


@pytest.fixture
def segmented(tiny_dataset, tmp_path):
    """Outputs of model "A" for the tiny dataset's cases, as inference writes them."""
    from pipeline.data.layouts import discover_cases
    from pipeline.inference.outputs import InferenceReport
    from pipeline.inference.predict import write_label_like

    items = [c.to_item() for c in discover_cases(tiny_dataset)]
    out = tmp_path / "seg"
    report = InferenceReport(out, model="A")
    import nibabel as nib

    for it in items[:2]:
        ref = nib.load(it["image"][0])
        path = write_label_like(ref.get_fdata().astype("uint8") * 0, it["image"][0], out / f"{it['case']}.nii.gz")
        report.wrote(it["case"], path, it["image"])
    return items, out


def tiny_dataset_of(items: list[dict]) -> Path:
    """The dataset folder of BraTS items (the parent of their case folders)."""
    return Path(items[0]["image"][0]).parent.parent


def test_outputs_of_the_same_model_are_skipped_and_the_summary_says_why(segmented):
    from pipeline.inference.outputs import InferenceReport, guard_outputs, pending_items

    items, out = segmented
    report = InferenceReport(out, model="A")
    guard_outputs(DataSource(tiny_dataset_of(items)), items, out, report=report)
    todo = pending_items(items, out, report=report)
    assert [it["case"] for it in todo] == [it["case"] for it in items[2:]]
    assert "skipped 2 already segmented by this model" in report.summary()
    report.finish()


def test_temporaries_left_by_a_killed_inference_go_when_the_folder_is_taken(segmented):
    from pipeline.inference.outputs import PROBABILITIES, InferenceReport, guard_outputs
    from tests.helpers import left_by_a_killed_write

    items, out = segmented
    (out / PROBABILITIES).mkdir()
    left = [left_by_a_killed_write(path) for path in (out / "BraTS2021_00009.nii.gz", out / "provenance.json",
                                                      out / PROBABILITIES / "BraTS2021_00009.nii.gz")]
    report = InferenceReport(out, model="A")
    guard_outputs(DataSource(tiny_dataset_of(items)), items, out, report=report)
    assert not any(p.exists() for p in left)
    report.finish()


@pytest.mark.parametrize("provenance", [pytest.param(True, id="another_model"),
                                        pytest.param(False, id="no_record_of_the_model")])
def test_outputs_of_another_model_are_refused_unless_overwrite(segmented, provenance):
    from pipeline.core.provenance import PROVENANCE
    from pipeline.inference.outputs import InferenceReport, guard_outputs

    items, out = segmented
    data = DataSource(tiny_dataset_of(items))
    if not provenance:
        (out / PROVENANCE).unlink()
    before = {p.name: _sha(p) for p in out.glob("*.nii.gz")}
    report = InferenceReport(out, model="B")
    with pytest.raises(UserError, match="not written by this model \\(B\\).*--overwrite true"):
        guard_outputs(data, items, out, report=report)
    assert {p.name: _sha(p) for p in out.glob("*.nii.gz")} == before
    report.lock.release()
    guard_outputs(data, items, out, report=InferenceReport(out, model="B"), overwrite=True)


@pytest.mark.parametrize("threads", [0, 2])
def test_a_case_being_replaced_is_credited_to_no_model_until_its_new_file_is_written(segmented, threads):
    """--overwrite with model B over model A's files: while B's file is written, provenance.json no longer says A
    (a run stopped there leaves a file of unknown origin, refused next time, never one credited to A)."""
    import json

    from pipeline.core.provenance import PROVENANCE
    from pipeline.inference.outputs import InferenceReport

    items, out = segmented
    case = items[0]["case"]
    target = out / f"{case}.nii.gz"
    seen_while_writing = {}

    def write() -> Path:
        seen_while_writing.update(json.loads((out / PROVENANCE).read_text())["cases"])
        return target

    report = InferenceReport(out, model="B", writer_threads=threads)
    report.write(case, target, write, lambda path: report.wrote(case, path, items[0]["image"]))
    report.writers.wait()
    assert case not in seen_while_writing and items[1]["case"] in seen_while_writing  # only the case replaced
    assert json.loads((out / PROVENANCE).read_text())["cases"][case]["model"] == "B"


# ---- through the MONAI CLI, as a user runs it --------------------------------------------------------------------

TINY = TINY_ARGS


def _cli(run_id: str, *args: str) -> subprocess.CompletedProcess:
    return run_bundle(run_id, cli_overrides(args), check=False)


def _last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


CLI_OUTPUT: dict[str, str] = {}


@pytest.fixture(scope="module")
def cli_run(tiny_dataset, tmp_path_factory):
    """A tiny run trained (1 epoch, demo-like network ids) and segmented once through the CLI."""
    run = tmp_path_factory.mktemp("cli") / "run"
    result = _cli("training", "--dataset_dir", str(tiny_dataset), "--run_dir", str(run), "--folds", "2",
                  "--epochs", "1", "--val_interval", "1", "--batch_size", "1", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    CLI_OUTPUT["training"] = result.stdout
    # no network ids: the run's record gives them
    result = _cli("inference", "--dataset_dir", str(tiny_dataset), "--run_dir", str(run),
                  "--num_workers", "0", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


@pytest.mark.parametrize("where", [pytest.param(".", id="the_dataset"), pytest.param("BraTS2021_00000", id="a_case"),
                                   pytest.param("out", id="inside_the_dataset")])
def test_cli_inference_into_the_dataset_is_refused_before_anything_is_written(cli_run, tiny_dataset, where):
    before = _tree(tiny_dataset)
    result = _cli("inference", "--dataset_dir", str(tiny_dataset), "--run_dir", str(cli_run),
                  "--output_dir", str(tiny_dataset / where), "--device", "cpu")
    assert result.returncode != 0 and "--output_dir" in _last_line(result)
    assert _tree(tiny_dataset) == before and not (tiny_dataset / "out").exists()


def test_a_datalist_the_user_put_in_the_run_folder_is_never_replaced_by_the_split(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "datalist.json").write_text('{"mine": true}')
    _start(run)
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    assert (run / "datalist.json").read_text() == '{"mine": true}'
    assert read_record(run)["split"] == {"train": ["a"], "validation": ["b"]}


def test_writing_a_datalist_over_one_with_another_split_is_refused_unless_forced(tiny_dataset, tmp_path):
    from pipeline.data.datalist import write_datalist
    from pipeline.data.layouts import DatasetError

    out = tmp_path / "datalist.json"
    write_datalist(tiny_dataset, out, folds=2)
    before = out.read_text()
    write_datalist(tiny_dataset, out, folds=2)  # the same content: nothing to do
    with pytest.raises(DatasetError, match="already exists with other content.*--force"):
        write_datalist(tiny_dataset, out, folds=4)
    assert out.read_text() == before
    assert json.loads(write_datalist(tiny_dataset, out, folds=4, force=True) and out.read_text())["folds"] == 4


@pytest.mark.parametrize(("roi", "message"), [
    pytest.param([31, 32, 32], r"multiple of its down-sampling \[2, 2, 2\] and at least twice it; nearest valid: "
                 r"--roi_size \[30,32,32\] or --roi_size \[32,32,32\]", id="odd_axis"),
    pytest.param([2, 32, 32], r"nearest valid: --roi_size \[4,32,32\]$", id="too_small"),
])
def test_a_roi_size_the_network_cannot_take_is_refused_with_the_nearest_valid_sizes(tmp_path, roi, message):
    from pipeline.model.network import check_roi_size

    with pytest.raises(NetworkError, match=message):
        check_roi_size(OTHER, roi)
    with pytest.raises(NetworkError, match="does not fit UNet"):
        _start(tmp_path / "run", roi_size=roi)  # training refuses it before the run folder is touched
    assert not (tmp_path / "run").exists()


def test_a_roi_size_the_network_takes_passes():
    from pipeline.model.network import check_roi_size

    assert check_roi_size(OTHER, [32, 32, 32]) == [32, 32, 32]


def test_a_folder_of_one_cases_files_is_one_case_for_inference(tiny_dataset, tmp_path):
    import shutil

    from pipeline.data.layouts.brats import single_case
    from pipeline.data.source import DataSource

    flat = tmp_path / "flat"
    flat.mkdir()
    for s in ("t1", "t1ce", "t2", "flair"):
        shutil.copy(tiny_dataset / "BraTS2021_00001" / f"BraTS2021_00001_{s}.nii.gz", flat / f"patientA_{s}.nii.gz")
    case, info = single_case(flat)
    assert case.case_id == "patientA" and info.layout == "brats2021" and case.label is None
    assert [p.rsplit("_", 1)[1] for p in case.images] == ["t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz", "flair.nii.gz"]
    assert [it["case"] for it in DataSource(tiny_dataset / "BraTS2021_00002").inference_items()] == ["BraTS2021_00002"]
    assert single_case(tiny_dataset) is None  # a dataset is not one case
    (flat / "other_t1.nii.gz").write_bytes(b"")
    assert single_case(flat) is None  # two cases' files: not one case


def test_a_runs_metadata_describes_its_own_channels_and_regions(tmp_path):
    from pipeline.data.labels import describe
    from pipeline.model.record import write_metadata

    meta = json.loads((CONFIGS / "metadata.json").read_text())
    path = write_metadata(tmp_path, meta, describe("brats2024"))
    fmt = json.loads(path.read_text())["network_data_format"]
    assert fmt["outputs"]["pred"]["channel_def"] == {"0": "WT", "1": "TC", "2": "ET", "3": "RC"}
    assert fmt["inputs"]["image"]["num_channels"] == 4 and fmt["outputs"]["pred"]["num_channels"] == 4
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 3  # the bundle's own is untouched


@pytest.mark.parametrize(("scheme", "stated", "not_stated"), [
    ("brats", ["4 ET", "ET as 4"], []),
    ("brats2023", ["3 ET", "ET as 3", "BraTS 2023+"], ["4 ET", "1 NCR, 2 ED, 4 ET"]),
    ("brats2024", ["4 RC", "RC as 4", "WT as 2"], ["4 ET"]),
    ("msd", ["1 ED", "WT as 1", "TC as 2"], ["4 ET", "1 NCR"]),
])
def test_a_runs_metadata_states_the_numbering_its_inference_writes(tmp_path, scheme, stated, not_stated):
    """The prose of the bundle's metadata.json (label_classes, pred_classes, description) said "writes BraTS labels
    (1 NCR, 2 ED, 4 ET)" in every run's copy, whatever its data; exports carry that copy."""
    from pipeline.data.labels import describe
    from pipeline.model.record import write_metadata

    meta = json.loads((CONFIGS / "metadata.json").read_text())
    written = json.loads(write_metadata(tmp_path, meta, describe(scheme)).read_text())
    prose = " | ".join(written[k] for k in ("label_classes", "pred_classes", "description"))
    assert all(s in prose for s in stated), prose
    assert not any(s in prose for s in not_stated), prose


def test_the_next_command_of_a_run_recorded_before_the_overlays_moved_names_files_that_exist(tmp_path):
    """Runs recorded before ``configs/variants/`` and ``configs/networks/`` name ``configs/fast.yaml`` and so on."""
    old = [str(REPO / "bundle" / "configs" / name) for name in
           ("common.yaml", "train.yaml", "fast.yaml", "segresnet.yaml", "demo.yaml", "multi_gpu_train.yaml")]
    (tmp_path / "run.json").write_text(json.dumps({"config_files": old, "ids": {"dataset_dir": "/data/x"}}))
    command = next_command(tmp_path)
    files = ast.literal_eval(shlex.split(command)[shlex.split(command).index("--config_file") + 1])
    assert [Path(f).relative_to(CONFIGS).as_posix() for f in files] == [
        "common.yaml", "inference.yaml", "variants/fast.yaml", "networks/segresnet.yaml", "variants/demo.yaml"]
    assert all(Path(f).is_file() for f in files)


@pytest.mark.parametrize("verb", [False, True], ids=["bundle_form", "verb_form"])
@pytest.mark.parametrize(("cases", "scheme", "fold", "named"), [
    pytest.param(["BraTS-PED-00000-000", "BraTS-PED-00001-000"], "ped", 0, "ped", id="ped_2024_cases"),
    pytest.param(["BraTS-PED-00000-000", "BraTS-PED-00001-000"], "brats2023", 0, "brats2023", id="ped_2023_cases"),
    pytest.param(["BraTS-PED-00000-000", "BraTS-GLI-00001-000"], "brats2023", "all", "brats2023",
                 id="ped_beside_gli_fold_all"),
    pytest.param(["BraTS-GLI-00000-000", "BraTS-GLI-00001-000"], "brats2023", 0, None, id="gli_cases_auto_reads"),
    pytest.param(["BraTS-GLI-00000-000", "BraTS-GLI-00001-000"], "brats2024", 0, "brats2024",
                 id="gli_cases_told_brats2024_which_auto_never_reads"),
    pytest.param(["BraTS2021_00000", "BraTS2021_00001"], "brats", "all", None, id="brats2021_cases_auto_reads"),
])
def test_the_next_command_names_the_scheme_of_cases_whose_names_do_not_tell_it(tmp_path, monkeypatch, verb, cases,
                                                                               scheme, fold, named):
    """Training's ``next:`` inference runs as printed: on BraTS-PED cases ``auto`` is refused, so it carries the
    scheme the run was trained in (on a datalist too: one the user wrote need not record it); elsewhere auto reads
    the data as it was read, and the line stays short."""
    from pipeline.core.errors import VERB_ENV

    if verb:
        monkeypatch.setenv(VERB_ENV, "train")
    else:
        monkeypatch.delenv(VERB_ENV, raising=False)
    files = [str(CONFIGS / "common.yaml"), str(CONFIGS / "train.yaml")]
    split = {"train": cases[:1], "validation": cases[1:]} if fold != "all" else {"train": cases, "validation": []}
    record = {"config_files": files, "split": split, "datalist_written": fold != "all",
              "ids": {"dataset_dir": "/data/x", "label_scheme": scheme, "fold": fold}}
    command = next_command(tmp_path, record)
    carried = re.findall(r"--(?:set )?label_scheme (\S+)", command)
    assert carried == ([named] if named else []), command  # also on a datalist: one the user wrote may not record it


@pytest.mark.parametrize("verb", [False, True], ids=["bundle_form", "verb_form"])
@pytest.mark.parametrize("datalist", [False, True], ids=["dataset", "datalist"])
def test_the_next_command_is_one_word_per_path_in_the_shell(tmp_path, monkeypatch, verb, datalist):
    """A run folder named "my run" printed ``--run .../my run``: pasted, the shell split it (infer refused ``run``)."""
    from pipeline.core.errors import VERB_ENV

    if verb:
        monkeypatch.setenv(VERB_ENV, "train")
    else:
        monkeypatch.delenv(VERB_ENV, raising=False)
    run, data = tmp_path / "my run's", tmp_path / "BraTS 2021"
    record = {"config_files": [str(CONFIGS / "common.yaml"), str(CONFIGS / "train.yaml")], "datalist_written": datalist,
              "split": {"train": ["A"], "validation": ["B"]}, "ids": {"dataset_dir": str(data), "fold": 0}}
    words = shlex.split(next_command(run, record))
    assert str(run) == words[words.index("--run" if verb else "--run_dir") + 1]
    given = str(run / "datalist.json") if datalist and not verb else str(data)
    assert given in words
    if not verb:
        assert ast.literal_eval(words[words.index("--config_file") + 1])[0] == str(CONFIGS / "common.yaml")


def test_the_schemes_named_again_are_the_built_ins_no_layout_reads_under_auto(layout_datasets) -> None:
    """BraTS 2024's resection cavity is opted into by name (auto reads BraTS 2023 names as brats2023): the next lines
    left it out, so the inference they printed refused the model and the evaluation refused the labels 4."""
    from pipeline.data.labels import BUILTIN, OPT_IN_SCHEMES
    from pipeline.data.layouts import detect_layout

    read_by_auto = {detect_layout(root).label_scheme for root in layout_datasets.values()}
    assert OPT_IN_SCHEMES == set(BUILTIN) - read_by_auto


def _items(*cases: str) -> list[dict]:
    return [{"case": c, "image": [f"{c}_t1.nii.gz"]} for c in cases]


SPLIT = {"train": ["A", "B", "C"], "validation": ["D", "E"]}


@pytest.mark.parametrize(("fold", "infer_fold", "items", "refused"), [
    pytest.param(0, 1, _items("A", "B"), "pass --infer_fold 0", id="another_fold_of_a_fold_0_model"),
    pytest.param("all", 0, _items("D", "E"), "it validated on no case (--fold all)", id="any_fold_of_a_fold_all_model"),
    pytest.param(1, 1, _items("A", "B"), "this datalist's folds are not those it trained with",
                 id="its_fold_number_in_another_datalist"),
    pytest.param(1, "01", _items("A", "B"), "this datalist's folds are not those it trained with",
                 id="its_fold_number_written_otherwise"),
    pytest.param("1", " 1", _items("A", "B"), "this datalist's folds are not those it trained with",
                 id="its_fold_number_as_text_both_sides"),
    pytest.param(0, 0, _items("D", "E"), None, id="its_own_validation_fold"),
    pytest.param(0, None, _items("A", "D"), None, id="every_case_without_a_fold"),
    pytest.param(0, -1, _items("A", "D"), None, id="negative_fold_means_every_case"),
])
def test_a_fold_segmented_as_held_out_must_be_one_the_model_never_trained_on(fold, infer_fold, items, refused):
    from pipeline.model.held_out import check_held_out

    record = {"ids": {"fold": fold}, "split": SPLIT if fold != "all" else {"train": [*"ABCDE"], "validation": []}}
    if refused is None:
        check_held_out(record, items, infer_fold)
        return
    with pytest.raises(RunError, match=rf"--infer_fold {infer_fold}: this model trained on 2 of the fold's 2") as err:
        check_held_out(record, items, infer_fold)
    assert refused in str(err.value)
    check_held_out(None, items, infer_fold)  # no run.json (a bare checkpoint): nothing to check against


@pytest.mark.parametrize("folds_given", [None, 3, 5])
def test_a_run_on_a_datalist_records_the_datalists_folds_whatever_folds_says(tiny_dataset: Path, tmp_path: Path,
                                                                             folds_given: int | None) -> None:
    from pipeline.data.datalist import write_datalist

    write_datalist(tiny_dataset, tmp_path / "dl.json", folds=2)
    data = DataSource(None, tmp_path / "dl.json", **({"folds": folds_given} if folds_given else {}))
    assert run_ids(data, fold=0, roi_size=[32, 32, 32])["folds"] == 2  # so a resume compares the split it used


@pytest.mark.parametrize(("record", "given", "expected"), [
    pytest.param({"ids": {"spacing": [2, 2, 2]}}, None, [2.0, 2.0, 2.0], id="the_runs_grid"),
    pytest.param({"ids": {"spacing": [2, 2, 2]}}, "[2.0, 2.0, 2.0]", [2.0, 2.0, 2.0], id="the_same_grid_given"),
    pytest.param({"ids": {"spacing": None}}, None, None, id="the_datas_own"),
    pytest.param(None, [2, 2, 2], [2.0, 2.0, 2.0], id="a_bare_checkpoint_takes_the_given_grid"),
    pytest.param({"ids": {}}, 1.5, [1.5, 1.5, 1.5], id="an_old_record_without_spacing"),
    pytest.param({"ids": {"spacing": [2, 2, 2]}}, [1, 1, 1], "trained at [2.0, 2.0, 2.0] mm", id="another_grid"),
    pytest.param({"ids": {"spacing": None}}, [2, 2, 2], "the data's own voxel size", id="a_grid_for_a_native_model"),
])
def test_inference_computes_at_the_grid_the_model_was_trained_at(record, given, expected):
    from pipeline.model.record import recorded_spacing

    if isinstance(expected, str):
        with pytest.raises(RunError, match=re.escape(expected)):
            recorded_spacing(record, given)
        return
    assert recorded_spacing(record, given) == expected


@pytest.mark.parametrize("kept", [("model.pt",), ("model.pt", "model_last.pt"), ("model_last.pt",)],
                         ids=["best_model", "best_and_last", "last_model"])
def test_a_resume_of_models_without_their_training_state_is_refused_and_leaves_them(tmp_path, kept):
    """checkpoint.pt deleted to save space (or a run's models copied alone): a resume would start at epoch 1 and
    replace the finished model at its first validation."""
    run = tmp_path / "run"
    _start(run)
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    _finish(run)
    for p in (run / "models").iterdir():
        if p.name not in kept:
            p.unlink()
    before = {p.name: _sha(p) for p in (run / "models").iterdir()}
    with pytest.raises(RunError, match=r"--resume true: .* but no checkpoint\.pt .* --overwrite true"):
        _start(run, resume=True)
    assert {p.name: _sha(p) for p in (run / "models").iterdir()} == before


@pytest.mark.parametrize("where, described_by", [
    pytest.param("own_run", "other", id="in_another_run_with_its_record"),
    pytest.param("run_models", "run", id="in_the_runs_models_folder"),
    pytest.param("recorded_ckpt_dir", "run", id="in_the_models_folder_the_record_names"),
    pytest.param("elsewhere", "refused", id="elsewhere_beside_a_recorded_run"),
    pytest.param("elsewhere_bare", "run", id="elsewhere_with_a_run_dir_without_record"),
])
def test_a_checkpoint_is_described_only_by_the_record_of_the_run_that_trained_it(tmp_path: Path, where: str,
                                                                                  described_by: str) -> None:
    """--ckpt_path /shared/colleague/model.pt with the default --run_dir runs/brats (the user's own run): that
    run.json's network, voxel size, patch and channels were applied to another model."""
    from pipeline.model.record import run_of_checkpoint

    run, other = tmp_path / "run", tmp_path / "other"
    if where == "recorded_ckpt_dir":
        start_training(run, tmp_path / "ckpts", resume=False, overwrite=False, ids=_ids(), network_factory=SMALL)
        release_held_folders()
    elif where != "elsewhere_bare":
        _start(run)
        release_held_folders()
    _start(other)
    release_held_folders()
    ckpt = {"own_run": other / "models" / "model.pt", "run_models": run / "models" / "model.pt",
            "recorded_ckpt_dir": tmp_path / "ckpts" / "model.pt"}.get(where, tmp_path / "shared" / "model.pt")
    if described_by == "refused":
        with pytest.raises(RunError, match=r"is not a model of the run in .*--run_dir of the run that trained it"):
            run_of_checkpoint(ckpt, run)
    else:
        assert Path(run_of_checkpoint(ckpt, run)) == {"other": other, "run": run}[described_by]


@pytest.mark.parametrize(("started", "resumed", "refused"), [
    pytest.param(["fast.yaml", "budget.yaml"], ["fast.yaml"], True, id="budget_run_resumed_without_minutes"),
    pytest.param(["fast.yaml"], [], True, id="fast_run_resumed_plain"),
    pytest.param(["fast.yaml", "budget.yaml"], ["fast.yaml", "budget.yaml"], False, id="same_recipe"),
])
def test_a_resume_with_another_recipe_is_refused_naming_the_overlays(tmp_path, monkeypatch, started, resumed,
                                                                     refused):
    """`train DATA --minutes 45`, killed, then `train DATA --resume`: the spacing alone was named, and following its
    advice ended in torch's KeyError on the budget's schedule; a loaded resume rewrote run.json's recipe."""
    def argv(overlays: list[str]) -> list[str]:
        files = ["/c/common.yaml", "/c/train.yaml", *[f"/c/variants/{o}" for o in overlays]]
        return ["python -m monai.bundle", "run", "training", "--config_file", repr(files)]

    run = tmp_path / "run"
    monkeypatch.setattr("sys.argv", argv(started))
    _start(run)
    _finish(run)
    monkeypatch.setattr("sys.argv", argv(resumed))
    if not refused:
        assert _start(run, resume=True)["config_files"][2:] == [f"/c/variants/{o}" for o in resumed]
        return
    with pytest.raises(RunError, match=re.escape(f"recipe (the config overlays) {started} -> {resumed}")):
        _start(run, resume=True)
    assert read_record(run)["config_files"][2:] == [f"/c/variants/{o}" for o in started]  # the record kept


@pytest.mark.parametrize(("given", "missing"), [
    pytest.param(["common.yaml", "inference.yaml"], ["fast.yaml", "budget.yaml"], id="hand_built_without_overlays"),
    pytest.param(["common.yaml", "inference.yaml", "fast.yaml"], ["budget.yaml"], id="without_the_budget_recipe"),
    pytest.param(["common.yaml", "inference.yaml", "fast.yaml", "budget.yaml"], [], id="the_runs_own_list"),
    pytest.param([], [], id="called_outside_monais_cli"),
])
def test_inference_without_an_overlay_the_run_trained_with_warns_naming_it_and_the_runs_own_list(
        given: list[str], missing: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.bundle import inference_files
    from pipeline.model.recipe import check_recipe

    record = {"config_files": [str(CONFIGS / f) for f in ("common.yaml", "train.yaml", "variants/fast.yaml",
                                                          "variants/budget.yaml")]}
    assert [Path(f).name for f in inference_files(tmp_path, record)] == ["common.yaml", "inference.yaml",
                                                                          "fast.yaml", "budget.yaml"]
    argv = ["run", "inference", "--config_file", repr([str(CONFIGS / f) for f in given])] if given else ["run"]
    with caplog.at_level("WARNING"):
        assert check_recipe(record, tmp_path, argv) == missing
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if missing:
        assert f"python -m pipeline.bundle configs inference --run {tmp_path}" in warned[-1]
        assert all(m in warned[-1] for m in missing)
    else:
        assert not warned


@pytest.mark.parametrize("edited", [False, True])
def test_a_resume_after_the_recipe_files_changed_warns_naming_them(tmp_path, monkeypatch, caplog, edited):
    """The overlays' names were compared on resume, not their content: a budget.yaml edited (or updated with the
    pipeline) between the start and the resume changed the recipe of the run's second half without a word."""
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("common.yaml", "train.yaml", "variants/budget.yaml"):
        (configs / Path(name).name).write_bytes((CONFIGS / name).read_bytes())
    files = [str(configs / n) for n in ("common.yaml", "train.yaml", "budget.yaml")]
    monkeypatch.setattr("sys.argv", ["monai.bundle", "run", "training", "--config_file", repr(files)])
    run = tmp_path / "run"
    started = _start(run)
    assert started["config_sha256"]["budget.yaml"] == hashlib.sha256((configs / "budget.yaml").read_bytes()).hexdigest()
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    _finish(run)
    if edited:
        (configs / "budget.yaml").write_text((configs / "budget.yaml").read_text() + "\nlearning_rate: 0.01\n")
    with caplog.at_level("WARNING"):
        _start(run, resume=True)
    warned = [r.getMessage() for r in caplog.records if "changed since this run started" in r.getMessage()]
    assert len(warned) == edited and (not edited or "budget.yaml" in warned[0] and "common.yaml" not in warned[0])
    resumed = read_record(run)
    assert resumed["config_sha256"] == started["config_sha256"]  # the version the run started with stays
    assert [list(c) for c in resumed.get("resumed_with_changed", [])] == ([["budget.yaml"]] if edited else [])


def test_inference_with_a_config_file_changed_since_training_warns_naming_it(tmp_path, caplog):
    from pipeline.model.recipe import check_recipe, config_versions

    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("common.yaml", "train.yaml", "inference.yaml", "variants/budget.yaml"):
        (configs / Path(name).name).write_bytes((CONFIGS / name).read_bytes())
    trained = [str(configs / n) for n in ("common.yaml", "train.yaml", "budget.yaml")]
    record = {"config_files": trained, "config_sha256": config_versions(trained)}
    argv = ["run", "inference", "--config_file", repr([str(configs / n) for n in ("common.yaml", "inference.yaml",
                                                                                  "budget.yaml")])]
    with caplog.at_level("WARNING"):
        check_recipe(record, tmp_path, argv)
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
        (configs / "budget.yaml").write_text((configs / "budget.yaml").read_text() + "\nmin_tumour_fraction: 0\n")
        check_recipe(record, tmp_path, argv)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].startswith("budget.yaml changed since") and "common.yaml" not in warned[0]


@pytest.mark.parametrize(("files", "trained"), [
    pytest.param("the_same_id", True, id="named_in_the_split"),
    pytest.param("the_same_id_other_images", "id", id="a_training_id_over_other_images"),  # ID_ONLY
    pytest.param("copied_under_another_name", True, id="a_training_case_renamed"),
    pytest.param("one_file_copied", False, id="one_training_image_reused_the_others_new"),
    pytest.param("other_images", False, id="a_new_case"),
])
def test_trained_on_knows_a_training_case_by_its_id_or_its_images(files: str, trained: bool | str,
                                                                  tmp_path: Path) -> None:
    """Marked True (not held out) or, for a training id over other images, `ID_ONLY`: another patient under a
    training case's id, or the same one saved again; the messages name those apart (red team)."""
    from pipeline.model.held_out import trained_on
    from pipeline.model.record import training_images

    def case(name: str, seed: int) -> dict:
        paths = []
        for i in range(4):
            p = tmp_path / name / f"{name}_{i}.nii.gz"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(bytes([seed, i]) * 1000)
            paths.append(str(p))
        return {"case": name, "image": paths}

    train = case("A", 1)
    record = {"split": {"train": ["A"], "validation": []}, "training_images": training_images([train])}
    if files == "the_same_id":
        item = train
    elif files == "the_same_id_other_images":
        item = {"case": "A", "image": case("elsewhere", 3)["image"]}
    elif files == "copied_under_another_name":
        item = case("B", 1)
    else:
        item = case("C", 2)
        if files == "one_file_copied":
            Path(item["image"][2]).write_bytes(Path(train["image"][2]).read_bytes())
    assert trained_on(record, [item]) == ({item["case"]: trained} if trained else {})


def test_training_cases_listed_out_of_id_order_are_known_by_their_images(tmp_path: Path) -> None:
    """run.json's split sorts the ids, its training_images follow the datalist: a datalist not in id order marked
    its own training cases as only sharing an id (review)."""
    from pipeline.model.held_out import trained_on
    from pipeline.model.record import training_images

    items = []
    for seed, name in enumerate(("b", "a"), start=1):  # the datalist's order
        paths = []
        for i in range(2):
            path = tmp_path / name / f"{name}_{i}.nii.gz"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(bytes([seed, i]) * (100 * seed))
            paths.append(str(path))
        items.append({"case": name, "image": paths})
    record = {"split": {"train": sorted(it["case"] for it in items), "validation": []},
              "training_images": training_images(items)}
    assert trained_on(record, items) == {"b": True, "a": True}


@pytest.mark.parametrize("models", [False, True], ids=["", "beside_models_of_no_record"])
@pytest.mark.parametrize("overwrite", [False, True], ids=["new_run", "overwrite"])
@pytest.mark.parametrize(("name", "content"), [
    pytest.param("metadata.json", "{\"mine\": 1}", id="metadata_json"),
    pytest.param("history.csv", "my,table\n1,2\n", id="history_csv"),
    pytest.param("progress.png", "my picture", id="progress_png"),
    pytest.param("run.json", "{\"notes\": \"mine\"}", id="a_run_json_that_is_no_run_record"),
])
def test_a_users_file_of_a_name_training_writes_refuses_the_run_folder(tmp_path: Path, name: str, content: str,
                                                                      overwrite: bool, models: bool) -> None:
    """A user's metadata.json (or progress.png) in a new run folder was replaced, their history.csv failed the run
    after its first epoch: refused before anything is written, even with --overwrite (it deletes a run's files), and
    beside models no run recorded (--overwrite deleted them and replaced the file)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text(content)
    if models and name != "run.json":
        (run / "models").mkdir()
        (run / "models" / "model.pt").write_bytes(b"a model")
    with pytest.raises(RunError, match=rf"{re.escape(str(run / name))}, which no training run wrote"):
        _start(run, overwrite=overwrite)
    release_held_folders()  # as the refused process exits: its lock goes
    assert (run / name).read_text() == content
    assert sorted(p.name for p in run.iterdir()) == sorted([name, *(["models"] if (run / "models").exists() else [])])
    assert not (run / "models").exists() or (run / "models" / "model.pt").read_bytes() == b"a model"


def test_a_runs_own_files_do_not_refuse_its_folder(tmp_path: Path) -> None:
    """Training again over a run (--overwrite) or after a refused start finds its own files: no refusal."""
    run = tmp_path / "run"
    _start(run)
    record_split(run, ([{"case": "a"}], [{"case": "b"}]))
    for name in ("metadata.json", "history.csv", "progress.png"):
        (run / name).write_text("written by the run")
    _finish(run)
    _start(run, overwrite=True)


@pytest.mark.parametrize(("edit", "field"), [
    pytest.param({"ids": 5}, "ids", id="ids_a_number"),
    pytest.param({"network": {}}, "network", id="network_without_target"),
    pytest.param({"ids": {"roi_size": "abc"}}, "ids.roi_size", id="roi_size_a_word"),
    pytest.param({"ids": {"channels": 5}}, "ids.channels", id="channels_a_number"),
    pytest.param({"ids": {"spacing": {"x": 1}}}, "ids.spacing", id="spacing_an_object"),
    pytest.param({"split": {"train": 5}}, "split", id="split_not_lists"),
    pytest.param({"config_files": "common.yaml"}, "config_files", id="config_files_a_string"),
    pytest.param({"ckpt_dir": 5}, "ckpt_dir", id="ckpt_dir_a_number"),
    pytest.param({"config_sha256": ["x"]}, "config_sha256", id="digests_a_list"),
    pytest.param({"ids": {"preprocessing": "x"}}, "ids.preprocessing", id="preprocessing_a_word"),
])
def test_an_edited_run_json_is_one_error_naming_the_field(tmp_path: Path, edit: dict, field: str) -> None:
    """An edited run.json (a network without _target_, a patch size that is a word, channels that are a number) ended
    inference in a traceback inside the config expression that read it."""
    from pipeline.model.record import RunError, read_record

    (tmp_path / "run.json").write_text(json.dumps({"ids": {"roi_size": [32, 32, 32], "channels": ["T1"]}, **edit}))
    with pytest.raises(RunError, match=rf"run.json: the field {re.escape(field)} \(.*\) is not as training wrote it"):
        read_record(tmp_path)


@pytest.mark.parametrize(("network", "said"), [
    pytest.param({"_target_": "subprocess.run", "args": ["true"]}, "is no network class", id="a_function_not_a_net"),
    pytest.param({"_target_": "UNet"}, "is no network class", id="no_module"),
    pytest.param({"_target_": "..nets.UNet"}, "is no network class", id="a_relative_name"),
    pytest.param({"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, "wings": 2}, "cannot be built",
                 id="an_argument_it_does_not_take"),
])
def test_a_recorded_network_is_built_only_as_a_network(network: dict, said: str) -> None:
    """A run's record is data: its network's ``_target_`` was imported and called whatever it named."""
    from pipeline.model.network import NetworkError, build_from_spec

    with pytest.raises(NetworkError, match=said):
        build_from_spec(network)


def test_a_recorded_network_module_is_not_imported_from_outside_the_network_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a record imported the module it named, running its top level, before the class was checked: a
    module outside monai, torch and this package is imported only by the config's own network, never by a record."""
    from pipeline.model.network import NetworkError, build_from_spec

    (tmp_path / "planted.py").write_text(
        f"import pathlib\npathlib.Path({str(tmp_path / 'ran')!r}).touch()\nimport torch\n"
        "class Net(torch.nn.Module):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "planted", raising=False)
    with pytest.raises(NetworkError, match=r"outside monai, torch, pipeline.*network_factory#_target_ planted.Net"):
        build_from_spec({"_target_": "planted.Net"})
    assert not (tmp_path / "ran").exists() and "planted" not in sys.modules
    import planted  # noqa: F401 - as the config's own network_factory imports it

    assert (tmp_path / "ran").exists() and isinstance(build_from_spec({"_target_": "planted.Net"}), planted.Net)
    monkeypatch.delitem(sys.modules, "planted")


def test_a_users_run_json_is_read_as_no_runs_record(tmp_path: Path) -> None:
    """A user's run.json (no ids) was refused as an edited run's record ("restore the run's run.json"): it is no
    run's, so training says so (move it aside) and the readers see no run."""
    from pipeline.core.kinds import kinds_in
    from pipeline.model.record import read_record

    (tmp_path / "run.json").write_text(json.dumps({"network": "resnet50"}))
    assert read_record(tmp_path) == {"network": "resnet50"} and kinds_in(tmp_path) == {}
