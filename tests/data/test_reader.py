"""Loading is safe in threads: two threads sharing the bundle's ``load_image`` each get their own case's channels,
whichever thread reads last (`pipeline.data.reader.NiftiReader`); MONAI 1.6.1's own reader does not."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from monai.transforms import LoadImage

from pipeline.data.datalist import build_datalist
from tests.helpers import parse_bundle

#: Every stage and variant whose configs load images with common.yaml's ``load_image``.
BUNDLE_PATHS = {
    "training": ("training", {}),
    "training, budget": ("training", {"budget": True}),
    "training, fast": ("training", {"fast": True}),
    "training, demo": ("training", {"demo": True}),
    "inference": ("inference", {}),
    "inference, ensemble": ("inference", {"ensemble": True}),
    "inference, fast": ("inference", {"fast": True}),
}


def _bundle_loader(run_id: str, variants: dict) -> LoadImage:
    return parse_bundle(run_id, **variants).get_parsed_content("load_image")._loader


def _interleaved(loader: LoadImage, image: list[str], label: str) -> tuple[int, int]:
    """Channels of ``image`` (4 files) and ``label`` loaded by two threads sharing ``loader``, with the label's
    ``read`` between the image's ``read`` and its ``get_data`` (what a ``CacheDataset`` fill can do)."""
    image_read, label_read = threading.Event(), threading.Event()
    for reader in loader.readers:
        read: Callable = reader.read

        def wrapped(files: object, _read: Callable = read, **kwargs: object) -> object:
            out = _read(files, **kwargs)
            if threading.current_thread().name == "image":
                image_read.set()
                assert label_read.wait(10)
            else:
                label_read.set()
            return out

        reader.read = wrapped
    channels: dict[str, int] = {}

    def load(name: str, files: object) -> None:
        if name == "label":
            assert image_read.wait(10)
        channels[name] = int(loader(files).shape[0])

    threads = [threading.Thread(target=load, args=(n, f), name=n) for n, f in (("image", image), ("label", label))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return channels["image"], channels["label"]


@pytest.mark.parametrize("path", list(BUNDLE_PATHS))
def test_threads_sharing_the_bundles_loader_each_get_their_own_cases_channels(tiny_dataset: Path, path: str) -> None:
    cases = build_datalist(tiny_dataset, folds=2)["training"]
    image, label = cases[0]["image"], cases[1]["label"]
    assert _interleaved(_bundle_loader(*BUNDLE_PATHS[path]), image, label) == (4, 1)


def test_monais_nibabel_reader_still_needs_the_workaround(tiny_dataset: Path) -> None:
    """MONAI 1.6.1 stacks the image with the label's file list: one channel (delete `NiftiReader` when this fails
    on a newer MONAI, and its row in pipeline.monai_workarounds)."""
    cases = build_datalist(tiny_dataset, folds=2)["training"]
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    assert _interleaved(loader, cases[0]["image"], cases[1]["label"]) == (1, 1)
