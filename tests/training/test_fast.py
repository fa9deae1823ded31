"""fast.yaml (the GPU-resident path) on the CPU; the CUDA checks run where a GPU is."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor, ThreadDataLoader, get_track_meta

from pipeline.model import precision
from tests.helpers import TINY_NETWORK, parse_bundle

#: a small network and patch, as the benchmarks' tiny preset
TINY_IDS = TINY_NETWORK


def _parser(run_id: str, variants: dict, **overrides: object) -> ConfigParser:
    """The bundle of ``run_id`` with ``variants`` (``fast=``, ``demo=``, ``ensemble=``; pipeline.bundle's order)."""
    with warnings.catch_warnings():  # over inference.yaml MONAI warns that `+train` has nothing to merge into
        warnings.filterwarnings("ignore", message=r"Can't merge entry \['\+train'\]")
        return parse_bundle(run_id, {"device": "cpu", "data_check": "off", **TINY_IDS, **overrides}, **variants)


def _training(tiny_dataset: Path, run_dir: Path, fast_overlay: bool = True, **overrides: object) -> ConfigParser:
    return _parser("training", {"fast": fast_overlay, "demo": True}, dataset_dir=str(tiny_dataset),
                   run_dir=str(run_dir), folds=2, **overrides)


def precision_mode(parser: ConfigParser, engine_amp: bool) -> str:
    """How a built configuration runs its network (`pipeline.model.precision.mode`)."""
    return precision.mode(engine_amp, parser.get_parsed_content("amp_kwargs")["dtype"],
                          parser.get_parsed_content("cpu_amp_enabled"))


def test_fast_overlay_merges_over_training_and_inference(tiny_dataset: Path, tmp_path: Path) -> None:
    trainer = _training(tiny_dataset, tmp_path).get_parsed_content("train#trainer")
    assert isinstance(trainer.data_loader, ThreadDataLoader)
    assert trainer.amp is False  # AMP stays off on the CPU
    inference = _parser("inference", {"fast": True}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path))
    evaluator = inference.get_parsed_content("evaluator")
    assert evaluator.amp is False
    # on the CPU fast.yaml's own windows per pass (measured fastest there), while the
    # plain configuration keeps common.yaml's; on the CPU the loader workers stay common.yaml's too
    assert inference.get_parsed_content("inferer").sw_batch_size == inference["cpu_sliding_window_batch_size"]
    plain = _parser("inference", {}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path))
    assert plain.get_parsed_content("inferer").sw_batch_size == plain["sliding_window_batch_size"]
    assert inference.get_parsed_content("num_workers") == plain.get_parsed_content("num_workers")


def _conv_weights(network: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in network.parameters() if p.dim() == 5]


def test_fast_float32_training_uses_channels_last_convolutions_on_the_cpu_and_inference_keeps_the_contiguous_layout(
        tiny_dataset: Path, tmp_path: Path) -> None:
    cl = torch.channels_last_3d
    fast_net = _training(tiny_dataset, tmp_path, cpu_amp=False).get_parsed_content("network")
    weights = _conv_weights(fast_net)  # a 1x1x1 kernel is both layouts at once
    assert all(w.is_contiguous(memory_format=cl) for w in weights)
    assert sum(not w.is_contiguous() for w in weights) > len(weights) // 2
    from_cli = _training(tiny_dataset, tmp_path, cpu_amp="false").get_parsed_content("network")  # --cpu_amp false
    assert all(w.is_contiguous(memory_format=cl) for w in _conv_weights(from_cli))
    plain_net = _training(tiny_dataset, tmp_path, fast_overlay=False).get_parsed_content("network")
    assert all(w.is_contiguous() for w in _conv_weights(plain_net))
    inference = _parser("inference", {"fast": True}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path),
                        cpu_amp=False)
    assert all(w.is_contiguous() for w in _conv_weights(inference.get_parsed_content("network")))
    # with bfloat16 autocast the contiguous layout is the faster one for training too (bench/RESULTS.md)
    bf16_net = _training(tiny_dataset, tmp_path, cpu_amp=True).get_parsed_content("network")
    assert all(w.is_contiguous() for w in _conv_weights(bf16_net))


def test_fast_turns_on_cpu_bf16_autocast_exactly_where_the_cpu_computes_bf16(tiny_dataset: Path,
                                                                             tmp_path: Path) -> None:
    parser = _training(tiny_dataset, tmp_path)
    assert parser.get_parsed_content("cpu_amp") == precision.cpu_bf16_supported()
    assert precision_mode(parser, False) == ("cpu bf16" if precision.cpu_bf16_supported() else "off")
    plain = _training(tiny_dataset, tmp_path, fast_overlay=False)
    assert precision_mode(plain, False) == "off" and precision_mode(plain, True) == "on (torch.float16)"


@pytest.mark.parametrize("run_id, variants", [pytest.param("training", {"fast": True}, id="training"),
                                              pytest.param("inference", {"fast": True}, id="inference"),
                                              pytest.param("inference", {"fast": True, "ensemble": True},
                                                           id="ensemble")])
def test_cpu_amp_wraps_every_network_the_configs_build(run_id: str, variants: dict, tmp_path: Path) -> None:
    parser = _parser(run_id, variants, run_dir=str(tmp_path), cpu_amp=True, ensemble_folds=[0, 1])
    assert hasattr(type(parser.get_parsed_content("network")), "_autocast_base")
    parser = _parser(run_id, variants, run_dir=str(tmp_path), cpu_amp=False, ensemble_folds=[0, 1])
    assert not hasattr(type(parser.get_parsed_content("network")), "_autocast_base")


def test_channels_last_network_trains_as_the_contiguous_one_and_its_checkpoint_loads_into_it(tmp_path: Path) -> None:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    contiguous = UNet(3, 4, 3, (8, 16, 32), (2, 2), num_res_units=1, norm="instance")
    channels_last = UNet(3, 4, 3, (8, 16, 32), (2, 2), num_res_units=1, norm="instance")
    channels_last.load_state_dict(contiguous.state_dict())
    channels_last.to(memory_format=torch.channels_last_3d)
    x, y = torch.randn(2, 4, 32, 32, 32), (torch.rand(2, 3, 32, 32, 32) > 0.5).float()
    for net in (contiguous, channels_last):  # one optimiser step each, from the same weights and batch
        optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
        torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
        optimiser.step()
    for a, b in zip(contiguous.state_dict().values(), channels_last.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    path = tmp_path / "model.pt"
    torch.save(channels_last.state_dict(), path)  # as the checkpoint savers do
    reloaded = UNet(3, 4, 3, (8, 16, 32), (2, 2), num_res_units=1, norm="instance")
    reloaded.load_state_dict(torch.load(path, weights_only=True))
    assert all(w.is_contiguous() for w in _conv_weights(reloaded))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(x), channels_last.eval()(x), rtol=1e-4, atol=1e-5)


def test_fast_batches_have_the_shapes_and_dtypes_of_the_plain_ones_without_metadata(tiny_dataset: Path,
                                                                                    tmp_path: Path) -> None:
    plain = next(iter(_training(tiny_dataset, tmp_path / "plain", False).get_parsed_content("train#dataloader")))
    parser = _training(tiny_dataset, tmp_path / "fast")
    ours = next(iter(parser.get_parsed_content("train#dataloader")))
    for key in ("image", "label"):
        assert tuple(ours[key].shape) == tuple(plain[key].shape)
        assert ours[key].dtype == plain[key].dtype == torch.float32
        assert not isinstance(ours[key], MetaTensor)  # no metadata in the hot loop
    assert get_track_meta()  # the random transforms restore MONAI's metadata tracking
    with torch.no_grad():
        out = parser.get_parsed_content("network")(ours["image"])
    assert tuple(out.shape) == tuple(ours["label"].shape)


def test_cache_dtype_and_device_ids_set_the_cached_volumes_which_the_patches_leave_unchanged(
        tiny_dataset: Path, tmp_path: Path) -> None:
    parser = _training(tiny_dataset, tmp_path, cache_image_dtype="$torch.bfloat16", cache_device="cpu")
    loader = parser.get_parsed_content("train#dataloader")
    cached = loader.dataset._cache[0]
    assert cached["image"].dtype == torch.bfloat16 and cached["label"].dtype == torch.uint8
    assert type(cached["image"]) is torch.Tensor and cached["image"].device.type == "cpu"
    before = {k: cached[k].clone() for k in ("image", "label", "label_fg_indices")}
    for _ in range(3):  # the cache is not copied per patch (copy_cache off): the transforms must not write to it
        for batch in loader:
            assert batch["image"].dtype == torch.float32
    assert all(torch.equal(before[k], loader.dataset._cache[0][k]) for k in before)


def test_cache_is_float16_in_ram_by_default_on_the_cpu_and_float32_on_request(tiny_dataset: Path,
                                                                               tmp_path: Path) -> None:
    cached = _training(tiny_dataset, tmp_path).get_parsed_content("train#dataset")._cache[0]
    assert cached["image"].dtype == torch.float16 and cached["image"].device.type == "cpu"
    parser = _training(tiny_dataset, tmp_path, cache_image_dtype="$torch.float32")
    assert parser.get_parsed_content("train#dataset")._cache[0]["image"].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_cache_is_half_precision_on_the_gpu_and_amp_uses_bf16(tiny_dataset: Path, tmp_path: Path) -> None:
    parser = _training(tiny_dataset, tmp_path, device="cuda")
    cached = parser.get_parsed_content("train#dataset")._cache[0]
    assert cached["image"].dtype == torch.float16 and cached["image"].device.type == "cuda"
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.amp is True and trainer.amp_kwargs == {"dtype": precision.amp_dtype("cuda")}
    assert parser.get_parsed_content("cudnn_benchmark") is True
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["image"].device.type == "cuda" and batch["label"].dtype == torch.float32


@pytest.mark.parametrize(("free_gib", "per_patch_gib", "batch", "minimum", "expected"), [
    (139, 0.62, 2, 4, 16),    # an H200: capped at MAX_PATCHES_PER_STEP
    (20, 0.62, 2, 4, 16),     # 10 GiB usable / 0.62 = 16
    (12, 0.62, 2, 4, 8),      # 6 GiB / 0.62 = 9 -> 8, a multiple of the batch
    (2, 0.62, 2, 4, 4),       # too little: never below the configured patches
    (12, 0.62, 3, 3, 9),
])
def test_patches_per_step_follow_the_gpu_memory(free_gib: float, per_patch_gib: float, batch: int, minimum: int,
                                                expected: int) -> None:
    from pipeline.training.fast import patches_for_memory

    assert patches_for_memory(int(free_gib * 2**30), int(per_patch_gib * 2**30), batch, minimum) == expected


@pytest.mark.parametrize(("choice", "expected"), [("auto", 2), ("off", 2), (8, 4), ("6", 3)])
def test_patches_per_step_on_the_cpu_are_the_configured_ones_unless_set(choice: object, expected: int) -> None:
    from pipeline.training.fast import samples_per_volume

    assert samples_per_volume(2, 2, choice, "cpu", network=torch.nn.Conv3d(4, 3, 1)) == expected


def test_the_patches_rule_builds_no_network_so_seeded_initial_weights_stay_where_they_were() -> None:
    """fast.yaml's ``train_num_samples`` once referred to ``@network``: the network was built earlier than without
    fast.yaml and its seeded weights moved (the demo's Dice changed). It refers to the factory now."""
    parser = parse_bundle("training", {"device": "cpu", "channels": ["T1", "T1ce", "T2", "FLAIR"]}, fast=True)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    assert parser.get_parsed_content("train_num_samples") == parser.get_parsed_content("num_samples")
    assert "network" not in parser.ref_resolver.resolved_content and "network_def" not in (
        parser.ref_resolver.resolved_content)
    assert torch.equal(torch.get_rng_state(), state)


def test_metadata_tracking_is_off_while_any_thread_is_inside_and_restored_when_the_last_leaves() -> None:
    import threading

    from pipeline.training.fast import without_metadata

    entered = {name: threading.Event() for name in "AB"}
    release = {name: threading.Event() for name in "AB"}
    seen = {}

    def step(name: str):  # noqa: ANN202 - a transform that waits inside WithoutMetadata until released
        def run(data: dict) -> dict:
            entered[name].set()
            assert release[name].wait(10)
            seen[name] = get_track_meta()
            return data
        return run

    assert get_track_meta()
    threads = {name: threading.Thread(target=without_metadata([step(name)]), args=({},)) for name in "AB"}
    threads["A"].start()
    assert entered["A"].wait(10)
    threads["B"].start()  # B enters while A is inside: B finds tracking off
    assert entered["B"].wait(10)
    release["A"].set()
    threads["A"].join(10)
    assert not get_track_meta()  # A left, B is still inside: still off
    release["B"].set()
    threads["B"].join(10)
    assert seen == {"A": False, "B": False}
    assert get_track_meta()  # the last to leave restored what the first found


@pytest.mark.parametrize("variants, spacing, dtype", [
    pytest.param({"fast": True, "demo": True}, None, torch.uint8, id="fast_own_voxels"),
    pytest.param({"fast": True, "demo": True}, 2, torch.float16, id="fast_spacing_2"),
    pytest.param({"fast": True, "demo": True}, "[2, 2, 1.5]", torch.float16, id="fast_spacing_text"),
    pytest.param({"fast": True, "budget": True}, "@default", torch.float16, id="budget"),
    pytest.param({"demo": True}, 2, torch.float32, id="plain_spacing_2"),
])
def test_resampled_label_regions_stay_soft_targets_in_every_training_cache(
        variants: dict, spacing: object, dtype: torch.dtype, tiny_dataset: Path, tmp_path: Path) -> None:
    """Area averaging (``--spacing``) makes each region the fraction of a coarse voxel it covers; a uint8 cache
    truncated every fraction to 0 (a thin enhancing rim vanished from the targets) wherever fast.yaml cached the
    labels, whatever the recipe: the cache's label dtype follows ``spacing``, in one place."""
    ids = {} if spacing == "@default" else {"spacing": spacing}
    parser = _parser("training", variants, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path), folds=2, **ids)
    label = parser.get_parsed_content("train#dataset")._cache[0]["label"]
    assert label.dtype == dtype
    if dtype != torch.uint8:
        soft = ((label > 0) & (label < 1)).sum()
        assert soft > 0  # the fractions are kept, not rounded to 0 or 1
    else:
        assert set(label.unique().tolist()) <= {0, 1}
