"""What every dataset layout yields: `Case`s, the `Problem`s of discovery, and the layout's `LayoutSpec`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.provenance import InputRef, input_refs
from pipeline.data.labels import (
    CHANNELS,
    NNUNET_PREFIX,
    Description,
    canonical_channel,
    contrast_of,
    contrast_spellings,
    untold_prefix,
)


@dataclass(frozen=True)
class LayoutSpec:
    """A dataset layout: its title, default label scheme and, for the BraTS layouts, the file naming."""

    name: str
    title: str
    label_scheme: str
    suffixes: tuple[str, ...] = ()   # file suffix of each CHANNELS entry (BraTS layouts)
    separator: str = "_"             # between the case id and the suffix
    example: str = ""                # one line for messages
    label_files: str = ""            # where a case's label file lies, relative to the root, for messages
    numbered_channels: bool = False  # one file per channel, named <case>_XXXX by channel number (nnU-Net)


@dataclass(frozen=True)
class Case:
    """One case.

    ``images``: the 4 contrast files in `CHANNELS` order, or (MSD) one 4D file whose channel
    ``channel_index[i]`` is ``CHANNELS[i]``, or (nnU-Net) one 3D file per channel of its ``dataset.json``, in
    ``channel_names`` order; ``label``: the segmentation or None.
    """

    case_id: str
    images: tuple[str, ...]
    label: str | None = None
    channel_index: tuple[int, ...] | None = None

    def to_item(self) -> dict:
        """The MONAI data dictionary: ``{"case", "image": [paths], "channel_index"?: [...], "label"?: path}``."""
        item: dict = {"case": self.case_id, "image": list(self.images)}
        if self.channel_index is not None:
            item["channel_index"] = list(self.channel_index)
        if self.label is not None:
            item["label"] = self.label
        return item

    @classmethod
    def from_item(cls, item: dict) -> Case:
        """The case of a datalist item (see `to_item`)."""
        image = item["image"]
        images = (str(image),) if isinstance(image, (str, os.PathLike)) else tuple(str(p) for p in image)
        index = item.get("channel_index")
        return cls(str(item["case"]), images, str(item["label"]) if item.get("label") else None,
                   tuple(int(i) for i in index) if index is not None else None)

    def inputs(self, channels: Sequence[str] | None = None) -> list[InputRef]:
        """What a segmentation of this case is made from, as provenance.json records it
        (`pipeline.core.provenance.input_refs`): its images in its channel order, a 4D file's volumes, each named
        by its canonical channel when ``channels`` (the description's channels, in the case's order) are given."""
        names = [canonical_channel(c) for c in channels] if channels is not None else None
        return input_refs(self.images, self.channel_index, names)

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the case: its images, then its label if it has one."""
        return (*self.images, *((self.label,) if self.label else ()))

    def channel_file(self, channel: str, channels: Sequence[str] = CHANNELS) -> tuple[str, int | None]:
        """``(file, index)`` of one channel of ``channels`` (the description's channels, `CHANNELS` by
        default): index is None for a 3D file, else the 4D position."""
        i = tuple(channels).index(channel)
        if self.channel_index is None:
            return self.images[i], None
        return self.images[0], self.channel_index[i]


@dataclass(frozen=True)
class Problem:
    """One problem of a dataset: the case, the file (full path, or the folder), ``error`` or ``warning``, and
    ``message``, one line that names the case and the file, says what is wrong and what to do."""

    case: str
    file: str
    severity: str
    message: str
    labels_only: bool = False  # it concerns the label files' numbering alone: a reader of images only passes it by
    unlabelled_only: bool = False  # a warning of the unlabelled test images (imagesTs/) alone: an error for inference

    def __str__(self) -> str:
        return f"{self.severity.upper()}: {self.message}"


@dataclass(frozen=True)
class LayoutInfo:
    """What `detect_layout` found: the layout, its default label scheme and why it was chosen."""

    layout: str
    label_scheme: str
    reason: str
    title: str = ""  # the layout's title, for messages
    named: bool = True  # the files' naming was seen (a scanned folder, a datalist that records its layout)
    described: bool = True  # its label_scheme was found, not assumed (a datalist that records one)
    untold: str = ""  # a case whose id does not tell its files' numbering (BraTS-PED: `with_case_ids`), or ""
    told: bool = True  # some case's names do tell it (False: every case is of ``untold``'s kind)

    def __str__(self) -> str:
        title = f" ({self.title})" if self.title else ""
        scheme = (f"label scheme not told by the names (case {self.untold})" if self.untold and not self.described
                  else f"label scheme {self.label_scheme}")
        return f"layout {self.layout}{title}, {scheme}: {self.reason}"


def with_case_ids(info: LayoutInfo, case_ids: Iterable[str], *, recorded: bool = False) -> LayoutInfo:
    """``info`` with what its cases' ids say of their numbering (`pipeline.data.labels.untold_prefix`): ``untold``
    the first id whose files' names do not tell it (``BraTS-PED-...``: 2023's GLI numbering or 2024's pediatric
    one), ``told`` whether another id's names do. The layout's own scheme is then no longer found but assumed
    (``described`` false), unless the data records it (``recorded``: a datalist's ``label_scheme``):
    `pipeline.data.layouts.resolve_scheme` refuses ``auto`` on such data, a folder with other cases beside them
    included. The one place ids are read for it: BraTS folders, single cases and datalists."""
    ids = [str(c) for c in case_ids]
    untold = next((c for c in ids if untold_prefix(c) is not None), "")
    if not untold:
        return info
    told = any(untold_prefix(c) is None for c in ids)
    return replace(info, untold=untold, told=told, described=info.described and recorded)


def order_by_name(own: Sequence[str], wanted: Sequence[str]) -> list[int] | None:
    """Where each of ``wanted`` lies among ``own``, matched by name (`canonical_channel`: t1gd is T1ce), never by
    position: None when both orders agree; raises ValueError when they do not name the same channels once each."""
    have, want = [canonical_channel(c) for c in own], [canonical_channel(c) for c in wanted]
    if have == want:
        return None
    if sorted(have) != sorted(want) or len(set(want)) != len(want):
        raise ValueError(f"{', '.join(own)} do not name the channels {', '.join(wanted)} once each")
    return [have.index(c) for c in want]


def _channels_source(desc: Description) -> str:
    """Where a description's channel names come from, for messages: its dataset.json's ``channel_names``, or the
    built-in scheme."""
    if desc.name.startswith(NNUNET_PREFIX):
        return f"channel_names of {desc.name[len(NNUNET_PREFIX):]}"
    return f"label scheme {desc.name}"


def channel_permutation(own: Description, wanted: Description, where: str) -> list[int] | None:
    """Where each of ``wanted``'s channels lies among the data's ``own`` (the descriptions the data is and the scheme
    it is read with), matched by name (`canonical_channel`: t1gd is T1ce, T2-FLAIR is FLAIR), never by position:
    None only when both name the same channels in the same order.

    Raises:
        DatasetError: names that match nothing on the other side: the dataset.json named, its unmatched names and
            the accepted contrast spellings (`contrast_spellings`) when a name is no contrast; else both lists of
            contrasts (other contrasts, or another number). ``where`` starts the message.
    """
    try:
        return order_by_name(own.channels, wanted.channels)
    except ValueError:
        pass
    have, want = [canonical_channel(c) for c in own.channels], [canonical_channel(c) for c in wanted.channels]
    unmatched: list[tuple[Description, list[str]]] = []  # names no contrast, nor the other side's
    for desc, mine, other in ((own, have, want), (wanted, want, have)):
        names = [n for n, c in zip(desc.channels, mine, strict=True) if contrast_of(c) is None and c not in other]
        if names:
            unmatched.append((desc, names))
    if unmatched:
        named = "; ".join(f"{', '.join(names)} ({_channels_source(desc)})" for desc, names in unmatched)
        files = [desc.name[len(NNUNET_PREFIX):] for desc, _ in unmatched if desc.name.startswith(NNUNET_PREFIX)]
        raise DatasetError(
            f"{where}: the channel name(s) {named} name no contrast the pipeline knows, so the channels "
            f"{', '.join(own.channels)} of the data cannot be matched by name to the channels "
            f"{', '.join(wanted.channels)} of the label scheme {wanted.name} (never by position): rename them in "
            f"{' and '.join(files) or 'the channel names'} to contrast names ({contrast_spellings()}), or read the "
            "data with its own scheme (--label_scheme auto)")
    raise DatasetError(f"{where}: its files hold the contrasts {', '.join(own.channels)}, the label scheme reads "
                       f"{', '.join(wanted.channels)}: read the data with its own scheme (--label_scheme auto) or a "
                       "scheme of the same contrasts")


def in_channel_order(case: Case, order: Sequence[int]) -> Case:
    """``case`` with its channels taken in ``order`` (`channel_permutation`): its files reordered, or for one 4D
    file its ``channel_index``. A case with another number of files is left as it is (the data check names it)."""
    if case.channel_index is not None:  # one 4D file: where each wanted contrast lies in it
        return Case(case.case_id, case.images, case.label, tuple(case.channel_index[i] for i in order))
    if len(case.images) != len(order):
        return case
    return Case(case.case_id, tuple(case.images[i] for i in order), case.label, None)


@dataclass
class DatasetScan:
    """What `scan_dataset` found: the layout, the complete cases and the problems of discovery."""

    root: Path
    layout: LayoutInfo
    cases: list[Case] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    kind: str = "dataset"  # what ``root`` is, for messages: a dataset folder, or a datalist its cases were read from

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


class DatasetError(UserError):
    """A dataset folder that cannot be used as it is; the message names the folder or case and the fix."""


def existing_root(root: str | os.PathLike) -> Path:
    """``root`` resolved, or a DatasetError when it is not a folder."""
    path = Path(root).expanduser().resolve()
    if path.is_file():  # an existing file is no missing folder
        if path.name.endswith((".nii", ".nii.gz")):
            raise DatasetError(f"{path} is one image file, not a dataset: pass the folder of its case "
                               f"({path.parent}) or the dataset folder above it")
        raise DatasetError(f"{path} is a file, not a dataset folder: pass the folder of the BraTS cases (infer -i "
                           "and evaluate also take a datalist .json in its place)")
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist: check the path (the folder of a BraTS download, "
                           "the Decathlon's Task01 or an nnU-Net dataset)")
    return path


def output_key(case_id: str) -> str:
    """What names a case's output file where letter case is ignored (macOS, Windows): ids with one key clash."""
    return str(case_id).casefold()


def refuse_case_clashes(scan: DatasetScan) -> None:
    """Take out of ``scan`` the cases whose ids differ only in letter case (``BraTS2021_00000`` and
    ``brats2021_00000``), with an error naming both: their outputs ``<case>.nii.gz`` would be one file on macOS and
    Windows, and a model trained on both would validate on its own training case. Every layout's scan ends here."""
    groups: dict[str, list[Case]] = {}
    for case in scan.cases:
        groups.setdefault(output_key(case.case_id), []).append(case)
    clashing = {key for key, cases in groups.items() if len(cases) > 1}
    for key in sorted(clashing):
        for case in groups[key]:  # each is named: every reader reports the cases it leaves out
            others = [c for c in groups[key] if c is not case]
            scan.problems.append(Problem(case.case_id, case.images[0], "error", (
                f"case {case.case_id}: its id and {', '.join(c.case_id for c in others)}'s differ only in letter case "
                f"({case.images[0]}; {'; '.join(c.images[0] for c in others)}): outputs are named <case>.nii.gz, one "
                "file where letter case is ignored (macOS, Windows); rename one of the cases or move it out of the "
                "dataset folder")))
    scan.cases[:] = [c for c in scan.cases if output_key(c.case_id) not in clashing]


def both_extensions(names: set[str], stem: str) -> tuple[str, str] | None:
    """``(stem.nii, stem.nii.gz)`` when a folder holds both (which one is meant cannot be told), else None."""
    pair = (f"{stem}.nii", f"{stem}.nii.gz")
    return pair if all(n in names for n in pair) else None
