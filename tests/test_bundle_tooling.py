"""MONAI's bundle tooling works on this bundle: verify_net_in_out, TorchScript and ONNX export match eager."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from tests.conftest import CONFIGS, REPO

#: (overlays, smallest patch whose bottleneck keeps > 1 voxel for instance norm)
NETWORK_OVERLAYS = [pytest.param([], 32, id="unet"), pytest.param(["demo.yaml"], 32, id="demo_unet"),
                    pytest.param(["segresnet.yaml"], 32, id="segresnet"),
                    pytest.param(["dynunet.yaml"], 64, id="dynunet_five_downsamplings")]


def _files(*overlays: str) -> str:
    return repr([str(CONFIGS / "common.yaml"), str(CONFIGS / "inference.yaml"), *(str(CONFIGS / o) for o in overlays)])


def _bundle(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _network(*overlays: str) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "common.yaml"), *(str(CONFIGS / o) for o in overlays)])
    return parser.get_parsed_content("network_def")


@pytest.mark.parametrize(("overlays", "size"), NETWORK_OVERLAYS)
def test_each_network_overlay_maps_four_contrasts_to_three_regions(overlays: list[str], size: int) -> None:
    net = _network(*overlays).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, size, size, size))
    assert tuple(out.shape) == (1, 3, size, size, size)


def test_verify_net_in_out_passes_against_the_metadata() -> None:
    result = _bundle("verify_net_in_out", "network_def", "--meta_file", str(CONFIGS / "metadata.json"),
                     "--config_file", _files(), "--n", "2", "--any", "1", "--device", "cpu")
    assert "verified with no error" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(_network("demo.yaml").state_dict(), path)
    return path


def test_torchscript_export_gives_the_eager_outputs(checkpoint: Path, tmp_path: Path) -> None:
    ts = tmp_path / "model.ts"
    _bundle("ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(checkpoint), "--meta_file",
            str(CONFIGS / "metadata.json"), "--config_file", _files("demo.yaml"), "--key_in_ckpt", "")
    eager = _network("demo.yaml").eval()
    eager.load_state_dict(torch.load(checkpoint, weights_only=True))
    scripted = torch.jit.load(str(ts)).eval()
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x), atol=1e-5, rtol=1e-5)


def test_onnx_export_gives_the_eager_outputs_in_onnxruntime(checkpoint: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    onnx_file = tmp_path / "model.onnx"
    _bundle("onnx_export", "network_def", "--filepath", str(onnx_file), "--ckpt_file", str(checkpoint),
            "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", _files("demo.yaml"),
            "--input_shape", "[1,4,32,32,32]")
    eager = _network("demo.yaml").eval()
    eager.load_state_dict(torch.load(checkpoint, weights_only=True))
    x = torch.randn(1, 4, 32, 32, 32)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), eager(x), atol=1e-4, rtol=1e-4)
