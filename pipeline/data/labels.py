"""The one table of channels, label numbering and regions: a dataset `Description`, in nnU-Net v2's vocabulary.

Arrays: an image is ``(C, H, W, D)`` float32 in ``channels`` order; a label map ``(H, W, D)`` of whole numbers;
regions ``(R, H, W, D)`` bool in ``regions`` order. The schemes, their numbering and why regions are written back
largest first are in `docs/datasets.md`."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.core.errors import UserError
from pipeline.core.files import read_json

#: Input channel names of the BraTS layouts, in the order the network sees them.
CHANNELS: tuple[str, ...] = ("T1", "T1ce", "T2", "FLAIR")


#: Network output channels of the ``brats``, ``brats2023``, ``msd`` and ``ped`` schemes (MONAI's order).
REGIONS: tuple[str, ...] = ("TC", "WT", "ET")


#: Contrast names as datasets spell them (lower case, without spaces, ``-`` or ``_``: `contrast_of`) -> the channel
#: names of `CHANNELS` (MSD's modality table, BraTS 2023 suffixes, nnU-Net channel_names, synthetic channels). Only
#: spellings that name one contrast: "T2-FLAIR" is FLAIR, "T1-Gd", "T1 post" and RSNA-MICCAI's "T1wCE" T1ce.
CONTRAST_NAMES: dict[str, str] = {"flair": "FLAIR", "t2f": "FLAIR", "t2flair": "FLAIR",
                                  "t1": "T1", "t1w": "T1", "t1n": "T1",
                                  "t1gd": "T1ce", "t1ce": "T1ce", "t1c": "T1ce", "t1post": "T1ce", "t1wce": "T1ce",
                                  "t2": "T2", "t2w": "T2"}


def contrast_of(name: object) -> str | None:
    """The contrast of `CHANNELS` a channel's name spells (`CONTRAST_NAMES`; letter case, spaces, ``-`` and ``_``
    ignored: "T2-FLAIR", "T1 Gd"), or None when it spells none."""
    return CONTRAST_NAMES.get(re.sub(r"[\s_-]+", "", str(name).lower()))


def contrast_spellings() -> str:
    """The accepted spellings of each contrast, for messages: ``T1: t1, t1n, t1w; T1ce: ...``."""
    return "; ".join(f"{c}: {', '.join(sorted(k for k, v in CONTRAST_NAMES.items() if v == c))}" for c in CHANNELS)


def canonical_channel(name: object) -> str:
    """A channel's name as `CHANNELS` spells it when it is one of the four contrasts (T1c is T1ce, t2f is FLAIR,
    `contrast_of`), else as given: two channel lists name the same images when their canonical names agree."""
    return contrast_of(name) or str(name)


#: Prefix of a scheme that names an nnU-Net ``dataset.json``.
NNUNET_PREFIX = "nnunet:"


@dataclass(frozen=True)
class Description:
    """What a dataset's files hold and what the network learns (see the module docstring).

    Attributes:
        name: the scheme name (``brats2024``) or ``nnunet:<path to dataset.json>``.
        title: one line for messages.
        channels: channel names, in the order the network sees them (nnU-Net ``channel_names``).
        labels: class name -> label value, background excluded (nnU-Net ``labels`` without regions).
        regions: region name -> label values, in network output order (one sigmoid channel each).
        regions_class_order: the label value each region channel is written as.
        evaluated: region name -> label values, in the order reports list them.
        roles: BraTS roles -> label value where they exist: ``NCR`` (the non-enhancing core: NCR, NETC, MSD's
            and BraTS-PED's NET), ``ED`` (oedema, SNFH), ``ET``, ``RC`` (resection cavity), ``CC`` (BraTS-PED's
            cystic component, part of the tumour core).
        file_ending: the file ending of the dataset's images.
        ignore: the value of nnU-Net's ``ignore`` label (unannotated voxels), or None: its voxels are left out of
            the loss, the validation Dice and the evaluation, as nnU-Net does.
    """

    name: str
    title: str
    channels: tuple[str, ...]
    labels: Mapping[str, int]
    regions: Mapping[str, tuple[int, ...]]
    regions_class_order: tuple[int, ...]
    evaluated: Mapping[str, tuple[int, ...]]
    roles: Mapping[str, int] = field(default_factory=dict)
    file_ending: str = ".nii.gz"
    ignore: int | None = None  # nnU-Net's ``ignore`` label: voxels neither trained on nor scored

    def __post_init__(self) -> None:
        if len(self.regions_class_order) != len(self.regions):
            raise UserError(f"{self.name}: regions_class_order has {len(self.regions_class_order)} entries for "
                            f"{len(self.regions)} regions; give one label value per region")
        if not self.channels or not self.regions:
            raise UserError(f"{self.name}: a description needs at least one channel and one region")
        sets = {name: set(values) for name, values in self.regions.items()}
        for (name, values), written in zip(sets.items(), self.regions_class_order, strict=True):
            holding = {other for other, s in sets.items() if written in s}
            containing = {other for other, s in sets.items() if values <= s}
            if holding != containing:  # read back, the written value would be another set of regions
                raise UserError(f"{self.name}: regions_class_order writes region {name!r} as {written}, which "
                                f"lies in {sorted(holding)} where {name!r} lies in {sorted(containing)}: read back, "
                                "its voxels would be other regions. Give each region a value of its own regions "
                                "and of no smaller one (nnU-Net: the innermost label, e.g. whole tumor 1, tumor core "
                                "2, enhancing 3)")

    @property
    def allowed(self) -> set[int]:
        """The label values a label file may hold, background 0 (and the ``ignore`` label) included."""
        return {0, *self.labels.values(), *(() if self.ignore is None else (self.ignore,))}

    @property
    def whole_tumour(self) -> str | None:
        """The region that is the whole tumour, by its labels: where the roles are known, the region of exactly the
        labels of `TUMOUR_ROLES` (NCR, ED, ET and BraTS-PED's CC: WT; not RC); else (an nnU-Net dataset's own
        regions) the one region that holds another and lies in none (nnU-Net's ``whole tumor`` of nested regions).
        None when no region is: one region per label, or two candidates."""
        if self.roles:
            whole = {self.roles[r] for r in TUMOUR_ROLES if r in self.roles}
            return next((name for name, values in self.regions.items() if set(values) == whole), None)
        sets = {name: set(values) for name, values in self.regions.items()}
        outer = [name for name, s in sets.items()
                 if any(t < s for t in sets.values()) and not any(s < t for t in sets.values())]
        return outer[0] if len(outer) == 1 else None

    def within(self, region: str) -> list[int]:
        """The channels (in `regions` order) whose labels all lie in ``region``'s, its own included."""
        outer = set(self.regions[region])
        return [i for i, values in enumerate(self.regions.values()) if set(values) <= outer]

    @property
    def write_order(self) -> list[int]:
        """Region channels in the order they are written: larger regions first, then channel order."""
        return sorted(range(len(self.regions)), key=lambda i: -len(tuple(self.regions.values())[i]))

    def to_dataset_json(self) -> dict:
        """This description in nnU-Net v2's ``dataset.json`` vocabulary."""
        labels: dict[str, int | list[int]] = {"background": 0}
        for name, values in self.regions.items():
            labels[name] = list(values) if len(values) > 1 else values[0]
        return {"channel_names": {str(i): c for i, c in enumerate(self.channels)}, "labels": labels,
                "regions_class_order": list(self.regions_class_order), "file_ending": self.file_ending}


_BRATS_CHANNELS = CHANNELS

#: The roles that make up the tumour (the whole tumour's labels; a resection cavity is none of it).
TUMOUR_ROLES: tuple[str, ...] = ("NCR", "ED", "ET", "CC")

#: The one numbering table: the label value of each tumour role (NCR: the non-enhancing core, NCR/NETC/NET; ED:
#: oedema, ED/SNFH; ET: enhancing tumour; RC: resection cavity; CC: BraTS-PED's cystic component) in every
#: numbering the pipeline reads or writes. The built-in schemes; ``nnunet-brats21``, nnU-Net's own BraTS 2021
#: conversion (Dataset137); ``challenge <c>``, the official BraTS evaluation's configs (``config_<c>.yaml`` of the
#: package brats-evaluation: ped numbers its classes as BraTS-PED 2024+ does, 1 et, 2 netc, 3 cc, 4 ed; menrt
#: scores one GTV label only).
NUMBERING: dict[str, dict[str, int]] = {
    "brats": {"NCR": 1, "ED": 2, "ET": 4},
    "brats2023": {"NCR": 1, "ED": 2, "ET": 3},
    "brats2024": {"NCR": 1, "ED": 2, "ET": 3, "RC": 4},
    "msd": {"NCR": 2, "ED": 1, "ET": 3},
    "ped": {"ET": 1, "NCR": 2, "CC": 3, "ED": 4},
    "nnunet-brats21": {"ED": 1, "NCR": 2, "ET": 3, "RC": 4},
    "challenge gli": {"NCR": 1, "ED": 2, "ET": 3, "RC": 4},
    "challenge mets": {"NCR": 1, "ED": 2, "ET": 3, "RC": 4},
    "challenge goat": {"NCR": 1, "ED": 2, "ET": 3},
    "challenge menpre": {"NCR": 1, "ED": 2, "ET": 3},
    "challenge ped": {"ET": 1, "NCR": 2, "CC": 3, "ED": 4},
    "challenge menrt": {},
}


#: The numbering a layout's file naming implies (a key of `NUMBERING`): BraTS 2018-2021 names mean ET = 4; BraTS
#: 2023+ names ET = 3 and 4 = the resection cavity of 2024's post-treatment glioma; MSD its own. nnU-Net's raw layout
#: implies none: its dataset.json describes its labels. Case ids of `UNTOLD_NUMBERING` override it.
NAMING_NUMBERING: dict[str, str] = {"brats2021": "brats", "brats2023": "brats2024", "msd": "msd"}


#: Case ids whose files' names do not tell their numbering, by id prefix -> each built-in scheme they may be
#: numbered in, with the data it reads: BraTS-PED 2023 was harmonised with the adult glioma's numbering (1 NETC,
#: 2 SNFH, 3 ET), BraTS-PED 2024 and later ship the pediatric one (1 ET, 2 NET, 3 CC, 4 ED) under the same names.
#: ``auto`` refuses to choose between them (`pipeline.data.layouts.resolve_scheme`); a scheme given is read against
#: each (`naming_numberings`).
UNTOLD_NUMBERING: dict[str, dict[str, str]] = {
    "BraTS-PED-": {"brats2023": "BraTS-PED 2023, GLI numbering", "ped": "BraTS-PED 2024+: 1 ET, 2 NET, 3 CC, 4 ED"},
}


def untold_prefix(case_id: object) -> str | None:
    """The prefix of `UNTOLD_NUMBERING` a case id starts with (``BraTS-PED-``: its files' names do not tell their
    numbering), or None when its names tell it."""
    return next((prefix for prefix in UNTOLD_NUMBERING if str(case_id).startswith(prefix)), None)



#: The built-in schemes ``auto`` never reads data with (each layout's own is ``brats``, ``brats2023`` or ``msd``; an
#: nnU-Net dataset's is its dataset.json): a command after one that was told must be told again.
OPT_IN_SCHEMES = frozenset({"brats2024", "ped"})

def scheme_to_name(case_ids: Iterable[object], scheme: object) -> str | None:
    """The label scheme a follow-up command (the ``next:`` lines, `pipeline.bundle.next_command`) must name for
    cases that were read with ``scheme``: ``scheme`` when it is one ``auto`` never chooses (`OPT_IN_SCHEMES`: BraTS
    2024's resection cavity) or any of ``case_ids`` does not tell its numbering by its names (`untold_prefix`:
    ``auto`` would be refused on them), else None (``auto`` reads them as they were read)."""
    if scheme in (None, "", "auto"):
        return None
    if scheme in OPT_IN_SCHEMES or any(untold_prefix(c) is not None for c in case_ids):
        return str(scheme)
    return None


def naming_numberings(layout: str | None, case_id: object = "") -> dict[str, str]:
    """What a case's names say of its numbering: ``{key of NUMBERING: the data it reads}``, one entry per reading.
    Its id's readings where the id does not tell it (`UNTOLD_NUMBERING`: a BraTS-PED case is ``brats2023`` or
    ``ped``), else the numbering its layout's file naming implies (`NAMING_NUMBERING`: ``{"brats2024": ""}`` for
    BraTS 2023+ names); empty when the names imply none (an nnU-Net dataset, an unknown layout). The one reading of
    names, for `pipeline.data.layouts.resolve_scheme` and the check's hint."""
    prefix = untold_prefix(case_id)
    if prefix is not None:
        return dict(UNTOLD_NUMBERING[prefix])
    naming = NAMING_NUMBERING.get(layout or "", "")
    return {naming: ""} if naming else {}


#: A label's role by the words of its name, first match (MSD's and nnU-Net's label tables): "non-enhancing FLAIR
#: hyperintensity" is oedema (SNFH) before "non-enhancing tumor" is NCR, which comes before "enhancing" makes ET.
_ROLE_WORDS: tuple[tuple[str, str], ...] = (
    ("hyperintens", "ED"), ("snfh", "ED"),  # BraTS's "Surrounding Non-enhancing FLAIR Hyperintensity": oedema
    ("non-enhancing", "NCR"), ("non enhancing", "NCR"), ("nonenhancing", "NCR"), ("necro", "NCR"), ("netc", "NCR"),
    ("ncr", "NCR"), ("net", "NCR"), ("edema", "ED"), ("oedema", "ED"), ("snfh", "ED"), ("ed", "ED"),
    ("enhancing", "ET"), ("et", "ET"), ("cavity", "RC"), ("rc", "RC"), ("cyst", "CC"), ("cc", "CC"))


def role_of_name(name: object) -> str | None:
    """The BraTS role (``NCR``, ``ED``, ``ET``, ``RC``, ``CC``) a label's name states, or None: whole words or word
    starts (``"GD-enhancing tumour"`` is ET, ``"peritumoral edema"`` ED, ``"cystic component"`` CC, ``"tumour"``
    nothing)."""
    text = str(name).strip().lower()
    words = text.replace("_", " ").replace("-", " ").replace("/", " ").split()
    for word, role in _ROLE_WORDS:
        if word in text if " " in word or "-" in word else any(
                w == word or (len(word) > 3 and w.startswith(word)) for w in words):
            return role
    return None


def _region_kind(name: str) -> str | None:
    key = name.strip().lower().replace("_", " ").replace("-", " ")
    if key in ("et", "enhancing tumor", "enhancing tumour") or ("enhancing" in key and "non" not in key):
        return "ET"
    if key in ("tc", "tumor core", "tumour core"):
        return "TC"
    if key in ("wt", "whole tumor", "whole tumour"):
        return "WT"
    return None


def roles_by_value(desc: Description) -> dict[int, str]:
    """``{label value: role}`` of a description: its roles (the built-in schemes), else what its plain labels' names
    state (`role_of_name`; an nnU-Net dataset.json), for those that state one; else, for BraTS's nested regions named
    as nnU-Net names them (``whole tumor`` ⊃ ``tumor core`` ⊃ ``enhancing tumor``, Dataset137), ET the enhancing
    region's, NCR the core's other values, ED the whole tumour's other values; empty when nothing states a role."""
    if desc.roles:
        return {v: r for r, v in desc.roles.items()}
    named = {v: r for name, v in desc.labels.items() if (r := role_of_name(name)) is not None}
    if named:
        return named
    kinds = {kind: set(values) for name, values in desc.regions.items() if (kind := _region_kind(name)) is not None}
    if set(kinds) != {"ET", "TC", "WT"} or not (kinds["ET"] < kinds["TC"] < kinds["WT"]):
        return {}
    return ({v: "ET" for v in kinds["ET"]} | {v: "NCR" for v in kinds["TC"] - kinds["ET"]}
            | {v: "ED" for v in kinds["WT"] - kinds["TC"]})


#: The meaning `meanings` gives nnU-Net's ``ignore`` label (unannotated voxels: neither trained on nor scored).
IGNORE = "ignore"


def meanings(desc: Description) -> dict[int, str]:
    """``{label value: meaning}`` of a description: its roles (`roles_by_value`) and `IGNORE` for its ``ignore``
    label: what two schemes must agree on, value by value, to read one dataset's labels."""
    return {**roles_by_value(desc), **({} if desc.ignore is None else {desc.ignore: IGNORE})}


def role_conflicts(a: Mapping[int, str], b: Mapping[int, str], names: tuple[str, str] = ("the data", "the scheme")
                   ) -> list[str]:
    """``["1 is ED in the data, NCR in the scheme", ...]``: the label values to which two numberings (``{value:
    role}``, named ``names``) give different roles."""
    return [f"{v} is {a[v]} in {names[0]}, {b[v]} in {names[1]}" for v in sorted(set(a) & set(b)) if a[v] != b[v]]


def relabel(labels: np.ndarray, roles: Mapping[int, str], numbering: str) -> np.ndarray:
    """A label map ``(...)`` whose values are the keys of ``roles`` (value -> role) renumbered into ``numbering``
    (a key of `NUMBERING`), uint8; background 0 stays 0.

    Raises:
        UserError: a role the numbering has no value for (e.g. RC in ``brats``).
    """
    target = NUMBERING[numbering]
    missing = sorted({r for r in roles.values() if r not in target})
    if missing:
        raise UserError(f"numbering {numbering} has no label for {', '.join(missing)}")
    lut = np.zeros(max([0, *roles]) + 1, dtype=np.uint8)
    for value, role in roles.items():
        lut[value] = target[role]
    return lut[np.asarray(labels).astype(np.intp, copy=False)]


BUILTIN: dict[str, Description] = {
    "brats": Description(
        "brats", "BraTS 2018-2021 (1 NCR, 2 ED, 4 ET)", _BRATS_CHANNELS, {"NCR": 1, "ED": 2, "ET": 4},
        {"TC": (1, 4), "WT": (1, 2, 4), "ET": (4,)}, (1, 2, 4),
        {"ET": (4,), "TC": (1, 4), "WT": (1, 2, 4)}, NUMBERING["brats"]),
    "brats2023": Description(
        "brats2023", "BraTS 2023+ (1 NETC, 2 SNFH, 3 ET)", _BRATS_CHANNELS, {"NETC": 1, "SNFH": 2, "ET": 3},
        {"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)}, (1, 2, 3),
        {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}, NUMBERING["brats2023"]),
    "brats2024": Description(
        "brats2024", "BraTS 2024+ post-treatment glioma (1 NETC, 2 SNFH, 3 ET, 4 RC)", _BRATS_CHANNELS,
        {"NETC": 1, "SNFH": 2, "ET": 3, "RC": 4},
        {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,), "RC": (4,)}, (2, 1, 3, 4),
        {"ET": (3,), "NETC": (1,), "SNFH": (2,), "RC": (4,), "TC": (1, 3), "WT": (1, 2, 3)},
        NUMBERING["brats2024"]),
    "msd": Description(
        "msd", "Decathlon Task01 (1 ED, 2 NET, 3 ET)", _BRATS_CHANNELS, {"ED": 1, "NET": 2, "ET": 3},
        {"TC": (2, 3), "WT": (1, 2, 3), "ET": (3,)}, (2, 1, 3),
        {"ET": (3,), "TC": (2, 3), "WT": (1, 2, 3)}, NUMBERING["msd"]),
    # BraTS-PED 2024+ (the official config_ped.yaml): ET = 1, TC = 1 + 2 + 3, WT = 1 + 2 + 3 + 4. Written back
    # largest region first: WT-only voxels 4 (ED), TC 2 (NET), ET 1. The cystic component (3) lies in TC and WT
    # exactly as NET does, so a network of these regions cannot tell it from NET: it is trained and scored as
    # tumour core and written as 2, never as 3.
    "ped": Description(
        "ped", "BraTS-PED 2024+ pediatric (1 ET, 2 NET, 3 CC, 4 ED)", _BRATS_CHANNELS,
        {"ET": 1, "NET": 2, "CC": 3, "ED": 4},
        {"TC": (1, 2, 3), "WT": (1, 2, 3, 4), "ET": (1,)}, (2, 4, 1),
        {"ET": (1,), "TC": (1, 2, 3), "WT": (1, 2, 3, 4)}, NUMBERING["ped"]),
}


#: Label value of each BraTS role, per built-in scheme (``NCR``, ``ED``, ``ET``; ``RC`` for brats2024, ``CC`` for
#: ped).
LABEL_SCHEMES: dict[str, dict[str, int]] = {name: dict(d.roles) for name, d in BUILTIN.items()}


#: The highest label value a scheme may have: segmentations are written as uint8.
MAX_LABEL = 255


def _values(value: object, where: str) -> tuple[int, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    values = [int(v) if isinstance(v, str) and v.strip().isdigit() else v for v in values]  # "1", as int() reads it
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):  # int(1.5) and int(True) would be 1
        raise UserError(f"{where}: label value {value!r} is not a whole number or a list of them")
    out = tuple(values)
    if not out or any(v < 0 for v in out):
        raise UserError(f"{where}: label value {value!r} must be one or more whole numbers >= 0")
    if any(v > MAX_LABEL for v in out):  # written as uint8 (pipeline.inference.predict), it would wrap round
        raise UserError(f"{where}: label value {value!r} is above {MAX_LABEL}: segmentations are written as 8-bit "
                        "label maps; renumber the classes within 1-255")
    return out


def from_dataset_json(meta: Mapping, name: str = "nnunet") -> Description:
    """A `Description` from an nnU-Net v2 ``dataset.json`` (already parsed).

    ``labels`` maps names to a value, or to a list of values for a region (region-based training, which needs
    ``regions_class_order``); plain labels become one region each, written as their own value.

    Raises:
        UserError: missing ``channel_names``/``labels``, non-integer values, or regions without
            ``regions_class_order`` (one value per region).
    """
    where = f"dataset description {name}"
    try:
        channel_table = meta["channel_names"]
        label_table = meta["labels"]
    except (KeyError, TypeError):
        raise UserError(f"{where}: dataset.json needs 'channel_names' and 'labels' (nnU-Net v2 format), e.g. "
                        '{"channel_names": {"0": "T1"}, "labels": {"background": 0, "tumour": 1}, '
                        '"file_ending": ".nii.gz"}') from None
    try:
        channels = tuple(str(channel_table[k]) for k in sorted(channel_table, key=int))
    except (ValueError, TypeError, AttributeError):
        raise UserError(f"{where}: channel_names must map 0, 1, ... to names, got {channel_table!r}") from None
    if not isinstance(channel_table, Mapping) or not isinstance(label_table, Mapping):
        raise UserError(f"{where}: 'channel_names' and 'labels' must be tables (JSON objects), got "
                        f"{type(channel_table).__name__} and {type(label_table).__name__}")
    entries = {str(k): _values(v, f"{where}, label {k!r}") for k, v in label_table.items()}
    entries = {k: v for k, v in entries.items() if v != (0,)}
    ignore = entries.pop("ignore", None)
    if not entries:
        raise UserError(f"{where}: 'labels' has no foreground label")
    if ignore is not None and (len(ignore) != 1 or ignore[0] < max(v for vs in entries.values() for v in vs)):
        raise UserError(f"{where}: the 'ignore' label must be one value, the highest (nnU-Net's rule), got {ignore}")
    region_based = any(len(v) > 1 for v in entries.values())
    if region_based:
        order = meta.get("regions_class_order")
        if not isinstance(order, (list, tuple)) or len(order) != len(entries):
            raise UserError(f"{where}: labels with region lists need 'regions_class_order' with one label value per "
                            f"region ({len(entries)}: {', '.join(entries)}), e.g. {list(range(1, len(entries) + 1))}")
        order = _values(list(order), f"{where}, regions_class_order")
        plain = sorted({v for values in entries.values() for v in values})
        labels = {f"label {v}": v for v in plain}
    else:
        order = tuple(v[0] for v in entries.values())
        labels = {k: v[0] for k, v in entries.items()}
        doubled = sorted({v for v in order if order.count(v) > 1})
        if doubled:  # two names of one class: two regions scored twice
            raise UserError(f"{where}: label value(s) {doubled} named twice in 'labels'; give each class one value")
    return Description(name, f"nnU-Net dataset {meta.get('name', name)}", channels, labels, entries, order, entries,
                       {}, str(meta.get("file_ending", ".nii.gz")), ignore[0] if ignore else None)


@functools.lru_cache(maxsize=32)
def _load_dataset_json(path: str, mtime_ns: int) -> Description:
    try:
        meta = read_json(Path(path))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read as a dataset.json ({e}); fix or restore it") from None
    return from_dataset_json(meta, f"{NNUNET_PREFIX}{path}")


def describe(scheme: str | Description) -> Description:
    """The `Description` of a scheme: a built-in name, ``nnunet:<dataset.json>``, or a Description.

    Raises:
        ValueError: an unknown scheme (the choices named).
    """
    if isinstance(scheme, Description):
        return scheme
    scheme = str(scheme)
    if scheme in BUILTIN:
        return BUILTIN[scheme]
    if scheme.startswith(NNUNET_PREFIX):
        path = os.path.abspath(scheme[len(NNUNET_PREFIX):])
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            raise UserError(f"label scheme {scheme}: {path} does not exist; point it at the dataset.json of an "
                            "nnU-Net raw dataset") from None
        return _load_dataset_json(path, mtime)
    raise UserError(
        f"unknown label scheme {scheme!r}; expected one of {sorted(BUILTIN)} "
        "(brats: BraTS 2018-2021 with ET=4, brats2023: BraTS 2023+ with ET=3, brats2024: BraTS 2024+ "
        "post-treatment glioma with 4 = resection cavity, msd: Decathlon Task01 with 1 ED, 2 NET, 3 ET, "
        "ped: BraTS-PED 2024+ with 1 ET, 2 NET, 3 CC, 4 ED) "
        f"or {NNUNET_PREFIX}<path to dataset.json>"
    )


def scheme_choices() -> str:
    """Every scheme a user can name, for messages: ``brats (BraTS 2018-2021 (1 NCR, 2 ED, 4 ET)); ...;
    nnunet:<dataset.json> (an nnU-Net dataset's own)``."""
    return "; ".join([*(f"{name} ({d.title})" for name, d in BUILTIN.items()),
                      f"{NNUNET_PREFIX}<dataset.json> (an nnU-Net dataset's own)"])


def scheme_name(scheme: str | Description, *, auto: bool = False) -> str:
    """The name of a scheme: a built-in name, or ``nnunet:`` + the absolute dataset.json; with ``auto``, ``auto``
    itself is accepted too (resolved later from the data).

    Raises:
        UserError: an unknown scheme (the choices named), or an unusable dataset.json.
    """
    if auto and scheme in (None, "", "auto"):
        return "auto"
    if isinstance(scheme, str) and scheme not in BUILTIN and not scheme.startswith(NNUNET_PREFIX):
        raise UserError(f"unknown label_scheme {scheme!r}; expected {'auto or ' if auto else ''}one of "
                        f"{sorted(BUILTIN)} (brats2024: BraTS 2024+ post-treatment glioma, 4 = resection cavity; "
                        "ped: BraTS-PED 2024+, 1 ET, 2 NET, 3 CC, 4 ED) or "
                        f"{NNUNET_PREFIX}<path to an nnU-Net dataset.json>")
    return describe(scheme).name


def scheme_labels(scheme: str | Description) -> dict[str, int]:
    """The label value of each BraTS role (``NCR``, ``ED``, ``ET``, ``RC``, ``CC``) that ``scheme`` has."""
    return dict(describe(scheme).roles)


def allowed_labels(scheme: str | Description) -> set[int]:
    """The label values a segmentation may hold under ``scheme``, background 0 included."""
    return describe(scheme).allowed


def _isin(label: np.ndarray | torch.Tensor, values: Sequence[int]) -> np.ndarray | torch.Tensor:
    if len(values) == 1:
        return label == values[0]
    if isinstance(label, torch.Tensor):
        return torch.isin(label, torch.tensor(list(values), dtype=label.dtype, device=label.device))
    return np.isin(label, values)


def region_masks(label: np.ndarray | torch.Tensor, regions: Mapping[str, Sequence[int]]) -> np.ndarray | torch.Tensor:
    """Labels ``(...)`` -> one bool mask per region of ``regions`` (name -> label values), stacked ``(R, ...)``."""
    stack = torch.stack if isinstance(label, torch.Tensor) else np.stack
    return stack([_isin(label, values) for values in regions.values()])


def labels_to_regions(label: np.ndarray | torch.Tensor, scheme: str | Description = "brats"
                      ) -> np.ndarray | torch.Tensor:
    """Labels ``(H, W, D)`` (any integer dtype) in ``scheme`` -> the network's regions ``(R, H, W, D)`` bool.

    For ``brats``/``brats2023``/``msd``/``ped``: TC, WT, ET (``ped``: ET = 1, TC = 1 | 2 | 3, WT = TC | 4); values
    outside the scheme count as background (as in MONAI's ``ConvertToMultiChannelBasedOnBratsClasses``, whose TC is
    label 1 | ET and so fits ``brats``/``brats2023`` but not ``msd`` or ``ped``). A torch tensor (on any device)
    gives a torch tensor, an array an array: the evaluation, the plots and the training transform all read labels
    through here.
    """
    return region_masks(label, describe(scheme).regions)


#: The region target of an ``ignore`` voxel (every region channel): the loss and the validation Dice leave out
#: targets above 1 (`pipeline.training.losses.IgnoreMasked`); it survives a uint8 cache.
IGNORE_TARGET = 255


def regions_with_ignore(label: torch.Tensor, description: Description) -> torch.Tensor:
    """Labels ``(H, W, D)`` -> regions ``(R, H, W, D)`` uint8 with `IGNORE_TARGET` in every channel where the label
    is the description's ``ignore`` value."""
    regions = region_masks(label, description.regions).to(torch.uint8)
    ignored = label == description.ignore
    return torch.where(ignored[None].expand_as(regions), torch.full_like(regions, IGNORE_TARGET), regions)


def split_ignore(regions: torch.Tensor) -> torch.Tensor:
    """Regions ``(R, ...)`` with `IGNORE_TARGET` on unannotated voxels -> ``(R + 1, ...)`` float32: the regions with
    those voxels at 0, then the ignore mask (0/1). Channels a linear or area interpolation may mix: the marker
    itself would blend into false targets (255 at weight 0.003 is a target of 0.77 beside it); `join_ignore`
    recombines them."""
    ignored = (regions > 1).any(0, keepdim=True)
    clean = torch.where(regions > 1, torch.zeros_like(regions), regions)
    return torch.cat([clean.float(), ignored.float()])


def join_ignore(mixed: torch.Tensor) -> torch.Tensor:
    """``(R + 1, ...)`` of `split_ignore`, interpolated -> regions ``(R, ...)`` float32: `IGNORE_TARGET` where the
    ignore mask is at least 0.5 (mostly unannotated, as nnU-Net resamples its ignore label), elsewhere each region's
    fraction of the annotated part."""
    regions, ignored = mixed[:-1].float(), mixed[-1:].float()
    regions = (regions / (1 - ignored).clamp(min=1e-6)).clamp(0, 1)
    return torch.where((ignored >= 0.5).expand_as(regions), torch.full_like(regions, IGNORE_TARGET), regions)


def has_ignore(regions: torch.Tensor) -> bool:
    """Whether label regions ``(R, ...)`` mark unannotated voxels (`IGNORE_TARGET`; any value above 1)."""
    return bool((torch.as_tensor(regions) > 1).any())


def regions_to_labels(regions: np.ndarray, scheme: str | Description = "brats") -> np.ndarray:
    """Binary regions ``(R, ...)`` (bool or 0/1, in the scheme's region order) -> labels ``(...)`` uint8.

    Each region is written as its ``regions_class_order`` value, larger regions first (module docstring): under
    ``brats`` every WT voxel is oedema (2), TC overwrites it with necrosis (1) and ET overwrites both with 4. So a
    voxel that the network calls TC or ET but not WT is still labelled (the regions need not nest). Under ``ped``
    WT is written 4 (ED), TC 2 (NET), ET 1: a cystic component (3) comes back as 2, the one value its regions share.
    """
    desc = describe(scheme)
    if regions.shape[0] != len(desc.regions):
        raise ValueError(f"expected {len(desc.regions)} region channels {tuple(desc.regions)} for scheme "
                         f"{desc.name}, got shape {tuple(regions.shape)}")
    out = np.zeros(np.asarray(regions[0]).shape, dtype=np.uint8)
    for i in desc.write_order:
        out[np.asarray(regions[i]).astype(bool)] = desc.regions_class_order[i]
    return out
