"""Fixtures: tiny synthetic BraTS datasets written once per test session (read-only; copy one before planting a
fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.files import release_held_folders
from pipeline.data.synthetic import write_dataset
from tests.helpers import LAYOUT_NAMES, LAYOUT_SHAPE, TINY_SHAPE


@pytest.fixture(scope="session", autouse=True)
def _warm_children() -> None:
    """Every ``python -m monai.bundle`` child of a command a test runs (a verb's stage, cv's folds, a benchmark's,
    the demo's) starts warm (`tests.warm.serve_children`): the same process, without ~5 s of imports each. A test
    of what only a fresh interpreter shows asks for `cold_children`."""
    import os
    import tempfile

    from tests.warm import serve_children

    folder = Path(tempfile.mkdtemp(prefix="warm"))  # short: a unix socket's path is at most 107 bytes
    environ, server = serve_children(folder)
    saved = {key: os.environ.get(key) for key in environ}
    os.environ.update(environ)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.terminate()
    server.join(10)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


@pytest.fixture
def cold_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``monai.bundle`` children of this test start cold, as on a user's machine: for what only a fresh
    interpreter shows (notices printed at import, the environment read at import) and for signals sent to them."""
    from tests.warm_site.sitecustomize import SOCKET_ENV

    monkeypatch.delenv(SOCKET_ENV, raising=False)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic cases of 48 x 48 x 32 voxels in the BraTS 2021 layout (read-only for tests)."""
    root = tmp_path_factory.mktemp("tiny") / "BraTS2021"
    write_dataset(root, cases=4, shape=TINY_SHAPE, seed=7)
    return root


@pytest.fixture(scope="session")
def layout_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 synthetic cases of 32 x 32 x 24 voxels in each layout, ``{layout: root}``; the same arrays in each
    (seed 5). Read-only: copy one before planting a fault."""
    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in LAYOUT_NAMES:
        write_dataset(base / layout, cases=3, shape=LAYOUT_SHAPE, seed=5, layout=layout)
        out[layout] = base / layout
    return out


@pytest.fixture(autouse=True)
def _release_held_folders() -> None:
    """What the end of a command's process does: a test calling evaluate() or compare() in-process leaves no lock."""
    yield
    release_held_folders()
