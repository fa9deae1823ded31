"""End to end through the MONAI CLI (or the scripts a user runs): bundle tooling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.bundle import config_files, config_list
from tests.helpers import CONFIGS, REPO, parse_bundle
from tests.warm import run_module


def _files(**variants: object) -> str:
    """The inference bundle's ``--config_file`` list with ``variants`` (``demo=True``, ``network=...``)."""
    return config_list(config_files("inference", **variants))


def _bundle(*args: str) -> subprocess.CompletedProcess:
    result = run_module([sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _network(**variants: object) -> torch.nn.Module:
    """The network the training bundle with ``variants`` builds (its config's, no run record)."""
    return parse_bundle("training", **variants).get_parsed_content("network_def")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(_network(demo=True).state_dict(), path)
    return path


#: converter_kwargs of ``onnx_export`` (README, "Shipping a model"): named input and output, batch and the three
#: spatial axes dynamic (torch's dynamo exporter turns ``dynamic_axes`` into dynamic shapes)
DYNAMIC_AXES = {0: "batch", 2: "h", 3: "w", 4: "d"}


ONNX_CONVERTER_KWARGS = {"input_names": ["image"], "output_names": ["pred"],
                         "dynamic_axes": {"image": DYNAMIC_AXES, "pred": DYNAMIC_AXES}}


def test_verify_net_in_out_passes_against_the_metadata() -> None:
    result = _bundle("verify_net_in_out", "network_def", "--meta_file", str(CONFIGS / "metadata.json"),
                     "--config_file", _files(), "--n", "2", "--any", "1", "--device", "cpu")
    assert "verified with no error" in result.stdout + result.stderr


def test_torchscript_export_gives_the_eager_outputs(checkpoint: Path, tmp_path: Path) -> None:
    ts = tmp_path / "model.ts"
    _bundle("ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(checkpoint), "--meta_file",
            str(CONFIGS / "metadata.json"), "--config_file", _files(demo=True), "--key_in_ckpt", "")
    eager = _network(demo=True).eval()
    eager.load_state_dict(torch.load(checkpoint, weights_only=True))
    scripted = torch.jit.load(str(ts)).eval()
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x), atol=1e-5, rtol=1e-5)
    # --filepath the checkpoint itself: refused in one line before MONAI writes (pipeline.core.guard.export_refusal)
    before = checkpoint.read_bytes()
    result = run_module([sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath",
                         str(checkpoint), "--ckpt_file", str(checkpoint), "--meta_file", str(CONFIGS / "metadata.json"),
                         "--config_file", _files(demo=True), "--key_in_ckpt", ""], capture_output=True, text=True,
                        cwd=REPO, timeout=300)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and last.startswith(f"error: --filepath {checkpoint} is the checkpoint ckpt_export")
    assert checkpoint.read_bytes() == before


def test_onnx_export_has_dynamic_axes_and_gives_the_eager_outputs_at_two_sizes(checkpoint: Path,
                                                                                tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    onnx_file = tmp_path / "model.onnx"
    _bundle("onnx_export", "network_def", "--filepath", str(onnx_file), "--ckpt_file", str(checkpoint),
            "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", _files(demo=True),
            "--input_shape", "[1,4,32,32,32]", "--converter_kwargs", repr(ONNX_CONVERTER_KWARGS))
    (graph_input,) = onnx.load(str(onnx_file)).graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims) == ("image", ["batch", 4, "h", "w", "d"])
    eager = _network(demo=True).eval()
    eager.load_state_dict(torch.load(checkpoint, weights_only=True))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    # the exported size, then another batch and shape (multiples of 8: demo.yaml's UNet down-samples 3 times)
    for shape in [(1, 4, 32, 32, 32), (2, 4, 48, 64, 32)]:
        x = torch.randn(shape)
        (got,) = session.run(["pred"], {"image": x.numpy()})
        assert got.shape == (shape[0], 3, *shape[2:])
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), eager(x), atol=1e-4, rtol=1e-4)
