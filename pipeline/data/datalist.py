"""Datalists: one schema (MONAI's decathlon-style JSON with case ids, folds, layout, scheme and channels),
built from discovered cases, written atomically, and read back validated. The schema is in `docs/datasets.md`."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.config import ALL_FOLDS
from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_text, read_json
from pipeline.core.guard import is_within
from pipeline.core.kinds import kinds_in
from pipeline.core.nifti import dangling, nifti_stem
from pipeline.data.labels import (
    CHANNELS,
    LABEL_SCHEMES,
    NNUNET_PREFIX,
    Description,
    describe,
)
from pipeline.data.layouts import (
    LAYOUTS,
    Case,
    DatasetError,
    DatasetScan,
    LayoutInfo,
    in_scheme_order,
    order_by_name,
    output_guard,
    output_key,
    resolve_scheme,
    scan_dataset,
    usable_cases,
    with_case_ids,
)
from pipeline.data.layouts.brats import named_as, named_split
from pipeline.data.modelzoo import MODEL_ZOO_FOLDS, MODEL_ZOO_KEYS, is_model_zoo, model_zoo_case_id, model_zoo_datalist

logger = logging.getLogger(__name__)


def assign_folds(case_ids: Sequence[str], folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Split cases into ``folds`` disjoint folds of near-equal size, shuffled by ``seed``.

    The split depends only on the sorted case ids and the seed, so it is the same on every machine.
    """
    if folds < 2:
        raise DatasetError(f"--folds must be at least 2 to leave a validation fold, got {folds}")
    ids = sorted(case_ids)
    if len(ids) < folds:
        raise DatasetError(f"{len(ids)} labelled case(s) cannot be split into {folds} folds; pass --folds {len(ids)}")
    random.Random(seed).shuffle(ids)
    return {cid: i % folds for i, cid in enumerate(ids)}


def _check_channel_count(cases: Sequence[Case], desc: Description) -> None:
    """Refuse cases whose image files do not give the description's channels (one file each, or a 4D file whose
    ``channel_index`` names each)."""
    n = len(desc.channels)
    for c in cases:
        got = len(c.channel_index) if c.channel_index is not None else len(c.images)
        if got != n:
            raise DatasetError(
                f"label scheme {desc.name} names {n} channel(s) ({', '.join(desc.channels)}) but case {c.case_id} "
                f"has {got} ({Path(c.images[0]).name}{', ...' if len(c.images) > 1 else ''}); use the dataset's own "
                "label scheme (--label_scheme auto) or one whose channels are the dataset's")


def datalist_from_cases(cases: Sequence[Case], name: str, layout: str, label_scheme: str, folds: int = 5,
                        seed: int = 0) -> dict:
    """A datalist (see the module docstring) of ``cases``, folds assigned over the labelled ones.

    ``channels`` and ``regions`` are those of ``label_scheme``'s description (`pipeline.data.labels.describe`).

    Raises:
        DatasetError: a case whose number of images is not the description's number of channels.
    """
    desc = describe(label_scheme)
    _check_channel_count(cases, desc)
    labelled = [c for c in cases if c.label is not None]
    fold_of = assign_folds([c.case_id for c in labelled], folds, seed) if labelled else {}
    return {
        "name": name,
        "layout": layout,
        "label_scheme": label_scheme,
        "channels": list(desc.channels),
        "regions": list(desc.regions),
        "folds": folds,
        "seed": seed,
        "training": [{**c.to_item(), "fold": fold_of[c.case_id]} for c in labelled],
        "test": [c.to_item() for c in cases if c.label is None],
    }


def build_datalist(root: str | os.PathLike, folds: int = 5, seed: int = 0, *, layout: str | None = None,
                   label_scheme: str | None = None) -> dict:
    """Discover the cases under ``root`` and return a datalist (see the module docstring) with folds assigned.

    The layout is detected unless given; the label scheme is the layout's unless given (``auto``/None).
    """
    scan = in_scheme_order(scan_dataset(root, layout), label_scheme)  # the scheme's channel order, by name
    cases = usable_cases(scan)
    scheme = resolve_scheme(scan.layout, label_scheme)
    return datalist_from_cases(cases, scan.root.name, scan.layout.layout, scheme, folds, seed)


def write_datalist(root: str | os.PathLike, out: str | os.PathLike, folds: int = 5, seed: int = 0, *,
                   layout: str | None = None, label_scheme: str | None = None, force: bool = False) -> dict:
    """`build_datalist` and write it to ``out`` as JSON (atomically: never a half-written file).

    A datalist is an input of the runs trained on it: an existing ``out`` with other content (other folds, say)
    is refused unless ``force``; the same content is left as it is.

    ``out`` may never be one of the dataset's files or lie in its folder (`pipeline.core.guard.OutputGuard`), even
    with ``force``.

    Raises:
        DatasetError: ``out`` exists with other content and not ``force``.
        UserError: ``out`` is an input of the dataset or lies in its folder.
    """
    scan = in_scheme_order(scan_dataset(root, layout), label_scheme)  # the scheme's channel order, by name
    cases = usable_cases(scan)
    guard = output_guard([f for c in cases for f in c.files], roots=[scan.root])
    out = guard.file(out, what="a datalist", option="--out")  # another dataset's folder too
    record = next((kind for kind, f in kinds_in(out.parent).items() if f.resolve() == out.resolve()), None)
    if record is not None:  # even with --force: a run's, an evaluation's, a comparison's or inference's record
        raise UserError(f"{out} is the record of {'a training run' if record == 'run' else record} there, not a "
                        "datalist: pass another --out")
    scheme = resolve_scheme(scan.layout, label_scheme)
    datalist = datalist_from_cases(cases, scan.root.name, scan.layout.layout, scheme, folds, seed)
    text = json.dumps(datalist, indent=2)
    if out.exists() and not force:
        if out.read_text() == text:
            return datalist
        raise DatasetError(f"{out} already exists with other content (another split or dataset; runs may have been "
                           "trained on it): write the new datalist elsewhere (--out), or pass --force to replace it")
    atomic_write_text(out, text)
    return datalist


def datalist_in_scheme_order(dl: dict, layout: LayoutInfo, scheme: str | None, path: str | os.PathLike, *,
                             labels: bool = True) -> dict:
    """A datalist read by `read_datalist` (each item's images in its own label scheme's channel order, ``layout``'s
    ``label_scheme``) with each item's images (or 4D ``channel_index``) in ``scheme``'s channel order: the same
    `in_scheme_order` a scanned folder goes through, matched by name, never by position; ``dl`` itself when no other
    scheme is given or the orders agree.

    Raises:
        UserError: a scheme `resolve_scheme` refuses.
        DatasetError: channels that cannot be matched by name, or nnU-Net's numbered files in another order
            (`in_scheme_order`; the datalist ``path`` named).
    """
    sections = [key for key in ("training", "test") if dl.get(key)]
    items = [it for key in sections for it in dl[key]]
    read = [Case.from_item(it) for it in items]
    cases = in_scheme_order(DatasetScan(Path(path), layout, read, kind="datalist"), scheme, labels=labels).cases
    if cases is read:  # its own order is the scheme's
        return dl
    ordered = iter(cases)  # in the order of ``items``: section by section

    def item(it: dict) -> dict:
        case = next(ordered)
        index = {} if case.channel_index is None else {"channel_index": list(case.channel_index)}
        return {**it, "image": list(case.images), **index}

    return {**dl, **{key: [item(it) for it in dl[key]] for key in sections}}


#: The longest case id, in UTF-8 bytes: ``.<case>.nii.gz.<random>`` (an atomic write's temporary) must fit a file
#: name's 255 bytes.
MAX_CASE_ID_BYTES = 200


def check_case_id(case_id: object, where: str) -> str:
    """``case_id`` when it is safe as a file name, else `DatasetError` (``where`` starts the message).

    Outputs are written as ``<output_dir>/<case>.nii.gz``, so an id must be a plain, non-empty name: no ``/`` or
    ``\\``, not ``.`` or ``..``, not absolute: nothing may ever be written outside ``output_dir``; no control
    character, no space at either end, no leading dot (hidden), at most `MAX_CASE_ID_BYTES` bytes.
    """
    if case_id is None:
        raise DatasetError(f"{where}: the item has no \"case\" id; give each item a plain case name such as "
                           "BraTS2021_00000 (outputs are written as <output_dir>/<case>.nii.gz)")
    if not isinstance(case_id, str) or not case_id.strip():
        reason = "is empty" if isinstance(case_id, str) else f"is a {type(case_id).__name__}"
    elif "/" in case_id or "\\" in case_id or os.path.isabs(case_id):
        reason = "holds a path separator"
    elif case_id in (".", ".."):
        reason = f"is {case_id!r}"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in case_id):
        reason = "holds a control character (a newline, a tab, NUL)"
    elif any(0xD800 <= ord(ch) <= 0xDFFF for ch in case_id):
        reason = "holds a lone surrogate (no character of UTF-8)"
    elif case_id != case_id.strip():
        reason = "starts or ends with a space"
    elif case_id.startswith("."):
        reason = "starts with a dot (a hidden file, which folder listings skip)"
    elif len(case_id.encode("utf-8")) > MAX_CASE_ID_BYTES:
        reason = (f"is {len(case_id.encode('utf-8'))} bytes long (file names hold 255, and the outputs add "
                  f"suffixes: at most {MAX_CASE_ID_BYTES})")
    else:
        return case_id
    raise DatasetError(
        f"{where}: case id {case_id!r} {reason}, so it cannot name a file (outputs are written as "
        "<output_dir>/<case>.nii.gz, never outside it); rename the case to a plain name such as BraTS2021_00000"
    )


def _undeclared_order(images: list[str], unnamed: int, where: str, numbered: bool = False) -> None:
    """Refuse image files whose names do not show their channel, listed in an order the datalist does not declare:
    taking them by position would be a guess (the model-zoo brats_mri_segmentation bundle lists T1ce first)."""
    rename = ("name the files <case>_0000.nii.gz, <case>_0001.nii.gz, ... by channel number (nnU-Net)" if numbered
              else "name the files <case>_<contrast>.nii.gz")
    example = "the dataset's channel names" if numbered else '["T1ce", "T1", "T2", "FLAIR"]'
    raise DatasetError(
        f"{where}: image names such as {Path(images[unnamed]).name} do not show their contrast, and the datalist does "
        f"not say in which order its items list them; add \"channels\": [...] at its top level naming them in the "
        f"listed order (e.g. {example}), or {rename}")


def _ordered_images(images: list[str], where: str, declared: bool = True) -> list[str]:
    """The 4 image files in `CHANNELS` order, checked against what their names show (`named_as`).

    Names that show nothing keep the given order only when the datalist declares it (``declared``: its
    ``"channels"``), else they are refused (`_undeclared_order`); names that show the four contrasts once each in
    another order are reordered (one INFO line: the names say it, it is not a guess); names that show anything else
    (a contrast twice, a segmentation, a named file in another contrast's place) are refused.
    """
    chans = [s[0] if (s := named_as(p)) else None for p in images]
    if chans.count(None) > 1 and not declared:  # one unnamed file is the contrast the others leave
        _undeclared_order(images, chans.index(None), where)
    if not any(chans):
        return images
    if all(chans) and sorted(c for c in chans if c) == sorted(CHANNELS):
        if chans != list(CHANNELS):
            logger.info("%s: image files listed as %s (their names say so); reordered to %s", where,
                        ", ".join(c for c in chans if c), ", ".join(CHANNELS))
            return [images[chans.index(c)] for c in CHANNELS]
        return images
    known = [c for c in chans if c]
    if "seg" in chans or len(set(known)) != len(known) or all(chans):
        why = f"not the four contrasts {', '.join(CHANNELS)} once each"
    elif any(c and c != CHANNELS[i] for i, c in enumerate(chans)):
        why = "a named file is in another contrast's place and the other names do not show theirs"
    else:
        return images  # each named file is in its own place
    names = ", ".join(f"{Path(p).name} ({c or 'name shows nothing'})" for p, c in zip(images, chans, strict=True))
    raise DatasetError(f"{where}: image files {names}: {why}; list one file of each contrast, in the order "
                       f"{', '.join(CHANNELS)} (a segmentation belongs in \"label\")")


def _checked_channel_index(index: object, images: list, where: str,
                           channels: Sequence[str] = CHANNELS) -> list[int]:
    """An MSD item's ``channel_index`` (the position in its one 4D file of each channel of ``channels``)."""
    n, names = len(channels), ", ".join(channels)
    if len(images) != 1:
        raise DatasetError(f"{where}: \"channel_index\" goes with one 4D image file, but \"image\" lists "
                           f"{len(images)}; give one 4D file, or {n} files without \"channel_index\"")
    if index is None:
        raise DatasetError(
            f"{where}: one image file {Path(str(images[0])).name} and no \"channel_index\"; a 4D image needs the "
            f"position in it of {names}: add e.g. \"channel_index\": [1, 2, 3, 0] for MSD's FLAIR, "
            "T1w, T1gd, T2w ([0, 1, 2, 3] if the file holds them in that order)")
    ok = isinstance(index, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in index)
    if not ok or sorted(index) != list(range(n)):  # type: ignore[arg-type]
        raise DatasetError(f"{where}: \"channel_index\" is {index!r}; expected the position in the 4D image of "
                           f"{names}, a permutation of 0..{n - 1} such as {list(range(n))[::-1]}")
    return list(index)  # type: ignore[arg-type]


@dataclass
class _DatalistReader:
    """Reads the items of one datalist JSON into the schema: case id, absolute existing paths, channel order."""

    path: Path
    model_zoo: bool
    data_root: Path | None = None  # model-zoo lists: the data root their relative paths may start from
    missing: list[str] = field(default_factory=list)  # one refusal line per missing file; the first is raised
    channels: tuple[str, ...] = CHANNELS  # the channels of the datalist's label scheme, one image file each
    numbered: bool = False  # its layout names image files by channel number (`LayoutSpec.numbered_channels`)
    listed: list[int] | None = None  # where each of `channels` is in an item's list (its "channels"), None: in order
    declared: bool = False  # the datalist says in which order its items list their images (its "channels")

    def __post_init__(self) -> None:
        self.base = Path(os.path.abspath(self.path.parent))

    def file(self, value: object, what: str, where: str) -> str:
        """``value`` as an absolute path (relative: from the datalist's folder); a missing file is noted."""
        if not isinstance(value, str) or not value.strip() or any(unicodedata.category(c) in ("Cc", "Cs")
                                                                  for c in value):  # NUL, a newline, a lone surrogate
            raise DatasetError(f"{where}: {what} {value!r} is not a file path; give the path of a .nii.gz file")
        given = os.path.expanduser(value)
        found = os.path.abspath(os.path.join(self.base, given))
        if os.path.isfile(found):
            return found
        if self.model_zoo and self.data_root is not None and not os.path.isabs(given):
            in_root = os.path.abspath(os.path.join(self.data_root, given))
            if os.path.isfile(in_root):
                return in_root
        link = dangling(found)
        if os.path.isdir(found):
            self.missing.append(f"{where}: {what} {value} is a folder, not a file; give the path of a .nii.gz file")
        elif os.path.isabs(given) or link:
            self.missing.append(f"{where}: {what} {value} does not exist{link}; "
                                + ("mount it, or remove the case" if link else "fix the path or remove the case"))
        elif self.model_zoo:
            root = f" nor in --dataset_dir {self.data_root}" if self.data_root is not None else ""
            self.missing.append(
                f"{where}: {what} {value} is not found in the datalist's folder {self.base}{root}; pass "
                "--dataset_dir as the data root the datalist's paths are relative to, or make the paths absolute")
        else:
            self.missing.append(
                f"{where}: {what} {value} is not found in the datalist's folder {self.base} (relative paths are "
                "read from there); fix the path, or rewrite the datalist with: python -m pipeline datalist "
                f"DATASET_DIR --out {self.path}")
        return found

    def item(self, raw: object, section: str, pos: int) -> dict:
        """One item as ``{"case", "image": [a path per channel] | [4D path], "channel_index"?, "label"?, "fold"?}``."""
        where = f"datalist {self.path}: {section} item {pos}"
        if not isinstance(raw, dict):
            raise DatasetError(f"{where} is {type(raw).__name__}, not an object like "
                               '{"case": ..., "image": [...], "label": ..., "fold": ...}')
        item = dict(raw)
        case = item.get("case", model_zoo_case_id(item) if self.model_zoo else None)
        item["case"] = check_case_id(case, where)
        where = f"datalist {self.path}: case {item['case']}"
        image = item.get("image")
        images = [image] if isinstance(image, str) else image
        n, names = len(self.channels), ", ".join(self.channels)
        if not isinstance(images, list) or not images:
            raise DatasetError(f"{where}: \"image\" is {image!r}; expected a list of {n} file(s) "
                               f"({names}) or one 4D file with \"channel_index\"")
        index = item.get("channel_index")
        if index is not None or (len(images) == 1 and n != 1):
            item["channel_index"] = _checked_channel_index(index, images, where, self.channels)
        elif len(images) != n:
            raise DatasetError(f"{where}: \"image\" lists {len(images)} file(s); expected {n} ({names}, the "
                               "channels of the datalist's label scheme) or one 4D file with \"channel_index\"")
        item["image"] = [self.file(p, "image file", where) for p in images]
        if self.listed is not None:  # listed in the datalist's declared "channels" order: to the scheme's, by name
            if "channel_index" in item:
                item["channel_index"] = [item["channel_index"][i] for i in self.listed]
            else:
                item["image"] = [item["image"][i] for i in self.listed]
        if "channel_index" not in item and self.channels == CHANNELS and not self.numbered:
            item["image"] = _ordered_images(item["image"], where, self.declared)
        elif "channel_index" not in item:
            item["image"] = _numbered_images(item["image"], where, self.declared)
        elif any((named_as(p) or ("",))[0] == "seg" for p in item["image"]):
            seg = next(p for p in item["image"] if (named_as(p) or ("",))[0] == "seg")
            what = "4D image" if "channel_index" in item else "image"
            raise DatasetError(f"{where}: the {what} {Path(seg).name} is named as a segmentation; give the "
                               f"segmentation as \"label\" and the {what} as \"image\"")
        if item.get("label") is not None:
            item["label"] = self.file(item["label"], "label file", where)
            shown = named_as(item["label"])
            if shown and shown[0] != "seg":
                raise DatasetError(f"{where}: the label file {Path(item['label']).name} is named as the {shown[0]} "
                                   "contrast; give the segmentation file as \"label\"")
        elif section in ("training", "validation"):
            raise DatasetError(f"{where}: a {section} item needs a \"label\" (its segmentation); add it, or move the "
                               f"case to \"{'testing' if self.model_zoo else 'test'}\" (cases to segment only)")
        else:
            item.pop("label", None)
        _refuse_other_cases(item, where, self.numbered)
        if self.model_zoo:
            if section in MODEL_ZOO_FOLDS:
                item["fold"] = MODEL_ZOO_FOLDS[section]
        elif section == "training":
            fold = item.get("fold")
            if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
                raise DatasetError(f"{where}: \"fold\" is {fold!r}; every training item needs a fold number >= 0: "
                                   "rewrite the datalist with: python -m pipeline datalist DATASET_DIR --out "
                                   f"{self.path}")
        return item


def _case_named(path: str, role: str, numbered: bool) -> str | None:
    """The case a file's name shows, or None where it shows none: a BraTS name's case part (``<case>_t1ce``,
    ``<case>-seg``); in a layout that numbers its channels (nnU-Net, one file per channel), an image's stem
    without ``_XXXX`` and a label's stem."""
    found = named_split(path)
    if found:
        return found[0]
    if not numbered:
        return None
    stem = nifti_stem(Path(path).name)
    if role == "label":
        return stem
    head, sep, tail = stem.rpartition("_")
    return head if sep and head and len(tail) == 4 and tail.isdigit() else None


def _same_form(name: str, case: str) -> bool:
    """Whether ``name`` is a case id of ``case``'s form: the same text where ``case`` has neither digits nor capitals
    (``BraTS2021_00001`` of ``BraTS2021_00000``'s, ``Brats18_CBICA_ABC_2`` of ``Brats18_CBICA_AAB_1``'s; a name of
    one's own such as ``patient7`` or ``BraTS2021_00000_flipped`` is not)."""
    pattern = "".join(r"\d+" if part.isdigit() else "[A-Z]+" if part.isupper() else re.escape(part)
                      for part in re.findall(r"\d+|[A-Z]+|[^\dA-Z]+", case))
    return re.fullmatch(pattern, name) is not None


def _refuse_other_cases(item: dict, where: str, numbered: bool) -> None:
    """An item's files must be one case's where their names show a case (`_case_named`): a datalist pairing one
    case's images with another's label (or with another case's contrast) would train on or score the wrong pairs
    without a sign.

    Raises:
        DatasetError: naming a file of each case, and the fix.
    """
    numbered = numbered and "channel_index" not in item  # a 4D file's own name may end in _0001 (case_0001.nii.gz)
    files = [(p, "image") for p in item["image"]] + ([(item["label"], "label")] if item.get("label") else [])
    shown = {p: c for p, role in files  # a missing file is refused as such, later (`_DatalistReader.missing`)
             if os.path.isfile(p) and (c := _case_named(p, role, numbered)) is not None}
    cases = sorted(set(shown.values()))
    if len(cases) == 1 and item["case"] != cases[0] and _same_form(item["case"], cases[0]):
        raise DatasetError(f"{where}: its files are {cases[0]}'s ({Path(next(iter(shown))).name}) but the item names "
                           f"another case of that form, {item['case']}: its segmentation would be written and "
                           f"scored as {item['case']}'s. Set \"case\" to {cases[0]} (or to a name of your own, not of "
                           f"{cases[0]}'s form)")
    if len(cases) > 1:
        first = next(p for p in shown if shown[p] == cases[0])
        other = next(p for p in shown if shown[p] == cases[1])
        raise DatasetError(f"{where}: its files are of different cases ({Path(first).name} of {cases[0]}, "
                           f"{Path(other).name} of {cases[1]}); list one case's images and label in each item")


def read_datalist(path: str | os.PathLike, dataset_dir: str | os.PathLike | None = None) -> dict:
    """A datalist JSON, validated, with absolute paths and the images in `CHANNELS` order.

    Two formats are read:

    * ours (`write_datalist`, see the module docstring): ``training`` (labelled, each with ``fold``) and
      ``test``; relative paths are read from the JSON file's own folder (not the current directory).
    * MONAI model-zoo (e.g. ``brats_mri_segmentation``): ``training``, ``validation`` and ``testing`` lists of
      ``{"image": [...], "label": ...}`` without case or fold. It is read with its OWN split: its ``validation``
      items become fold 0 and its ``training`` items fold 1 (so ``--fold 0`` validates on its validation cases,
      none dropped), ``testing`` becomes ``test``, and ``"split": "model-zoo"`` is recorded. Case ids come from
      the file names (`model_zoo_case_id`). A relative path not found from the JSON's folder is looked
      for under ``dataset_dir`` (model-zoo lists are relative to their data root). The layout and label scheme
      are recorded when the names show them.

    Every item is checked: a case id unique and safe as a file name (`check_case_id`); ``image`` one file
    per channel of the datalist's label scheme (`pipeline.data.labels.describe`; ``brats`` when it names neither
    scheme nor layout): for the 4 BraTS channels reordered into CHANNELS order when their BraTS names show the
    four contrasts in another order, refused when the names show anything but the four contrasts once each; or
    one 4D file with ``channel_index`` (a permutation of 0..N-1); training and validation items labelled; every
    file present. An nnU-Net datalist (``"label_scheme": "nnunet:<dataset.json>"``) needs that dataset.json.

    Raises:
        DatasetError: the first problem, as one line naming the datalist, the case, the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"datalist {path} does not exist; write one with: python -m pipeline datalist DATASET_DIR --out {path}")
    try:
        raw = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"datalist {path} is not valid JSON ({e}); fix it, or rewrite it with: "
                           f"python -m pipeline datalist DATASET_DIR --out {path}") from None
    sections = ("training", "test", *MODEL_ZOO_KEYS[1:])
    if not isinstance(raw, dict) or not any(k in raw for k in sections):
        raise DatasetError(f"datalist {path} has none of the keys training, test (ours) or training, validation, "
                           f"testing (MONAI model-zoo); write one with: python -m pipeline datalist DATASET_DIR "
                           f"--out {path}")
    for key in sections:
        if not isinstance(raw.get(key, []), list):
            raise DatasetError(f"datalist {path}: \"{key}\" is {type(raw[key]).__name__}, not a list of items")
    zoo = is_model_zoo(raw)
    if zoo and "test" in raw:
        raise DatasetError(f"datalist {path} mixes our \"test\" key with MONAI model-zoo keys (validation, testing); "
                           "keep one format")
    if isinstance(raw.get("label_scheme"), str) and raw["label_scheme"].startswith(NNUNET_PREFIX):
        # a relative dataset.json is read from the datalist's folder, as its relative image paths are
        given = raw["label_scheme"][len(NNUNET_PREFIX):]
        raw = {**raw, "label_scheme": NNUNET_PREFIX + os.path.abspath(os.path.join(path.parent, given))}
    channels = _datalist_channels(path, raw)
    reader = _DatalistReader(path, zoo, Path(dataset_dir).expanduser() if dataset_dir else None, channels=channels,
                             numbered=LAYOUTS[datalist_layout(raw)].numbered_channels,  # the files' naming
                             listed=_listed_order(path, raw, channels),  # the order its "channels" declare
                             declared=raw.get("channels") is not None)
    parts = {key: [reader.item(it, key, i) for i, it in enumerate(raw.get(key, []))]
             for key in ((*MODEL_ZOO_KEYS,) if zoo else ("training", "test"))}
    _refuse_duplicate_ids(path, parts, zoo)
    if reader.missing:
        more = f" ({len(reader.missing) - 1} more file(s) missing)" if len(reader.missing) > 1 else ""
        raise DatasetError(reader.missing[0] + more)
    if not zoo:
        return {**raw, "training": parts["training"], "test": parts["test"]}
    return model_zoo_datalist(path, raw, parts)


def refuse_files_outside(path: str | os.PathLike, datalist: dict, dataset_dir: str | os.PathLike) -> None:
    """Given with a datalist, ``dataset_dir`` is only the root of a model-zoo list's relative paths: the datalist's
    files are what is read. Where the user names a ``dataset_dir`` as the data to read (``pipeline cv
    --dataset_dir``), a datalist whose files lie outside it (by path as written or resolved) would read other data
    than the folder given: refused, naming a file.

    Raises:
        DatasetError: a case's file outside ``dataset_dir``.
    """
    dataset_dir = Path(dataset_dir).expanduser()
    roots = {Path(os.path.abspath(dataset_dir)), dataset_dir.resolve()}
    for items in (v for k, v in datalist.items() if k in ("training", "test", *MODEL_ZOO_KEYS)):
        for item in items:
            files = [*item.get("image", []), *([item["label"]] if item.get("label") else [])]
            for f in files:  # by the path as written or resolved: a dataset reached through a link is inside
                if not any(is_within(Path(os.path.abspath(f)), r) or is_within(Path(f).resolve(), r) for r in roots):
                    raise DatasetError(
                        f"datalist {path}: case {item['case']}'s file {f} lies outside --dataset_dir {dataset_dir}, "
                        "and the datalist's files are the ones read (--dataset_dir only roots a model-zoo list's "
                        "relative paths): drop --dataset_dir, or write a datalist of that folder with: python -m "
                        f"pipeline datalist {dataset_dir} --out DATALIST.json")


#: The layout of a datalist that names none (one written before layouts were recorded, a model-zoo list whose
#: names show no single layout): the BraTS 2018-2021 naming and numbering.
DATALIST_DEFAULT_LAYOUT = "brats2021"


def datalist_layout(raw: dict) -> str:
    """The layout a datalist's items follow: its ``layout``, else `DATALIST_DEFAULT_LAYOUT` (read here only)."""
    return raw.get("layout") or DATALIST_DEFAULT_LAYOUT


def _datalist_channels(path: Path, raw: dict) -> tuple[str, ...]:
    """The channels a datalist's items must give: those of its label scheme's description (the layout's scheme when
    it names none, `datalist_layout`'s); its ``channels``, when given, must be as many.

    Raises:
        DatasetError: an unknown layout or scheme, an nnU-Net scheme whose dataset.json cannot be used, a layout
            ``nnunet`` without a scheme, ``channels`` of another length.
    """
    layout, scheme = raw.get("layout"), raw.get("label_scheme")
    if layout is not None and layout not in LAYOUTS:
        raise DatasetError(f"datalist {path}: layout {layout!r} is unknown; expected one of {', '.join(LAYOUTS)}")
    if scheme is not None and not isinstance(scheme, str):
        raise DatasetError(f"datalist {path}: label_scheme {scheme!r} is not a string; expected one of "
                           f"{', '.join(LABEL_SCHEMES)} or {NNUNET_PREFIX}<path to dataset.json>")
    if scheme is None and layout == "nnunet":
        raise DatasetError(f"datalist {path}: layout nnunet and no label_scheme; add \"label_scheme\": "
                           f"\"{NNUNET_PREFIX}/path/to/dataset.json\" (the dataset's own), or rewrite the datalist "
                           f"with: python -m pipeline datalist DATASET_DIR --out {path}")
    if scheme is not None and scheme not in LABEL_SCHEMES and not scheme.startswith(NNUNET_PREFIX):
        raise DatasetError(f"datalist {path}: label_scheme {scheme!r} is unknown; expected one of "
                           f"{', '.join(LABEL_SCHEMES)} or {NNUNET_PREFIX}<path to dataset.json>")
    try:
        desc = describe(scheme or LAYOUTS[datalist_layout(raw)].label_scheme)
        if layout not in (None, "nnunet") and scheme is not None:  # its own scheme against its files' naming
            ids = [it.get("case") for key in ("training", "test") for it in raw.get(key, []) if isinstance(it, dict)]
            info = LayoutInfo(layout, LAYOUTS[layout].label_scheme, f"datalist {path}", LAYOUTS[layout].title)
            resolve_scheme(with_case_ids(info, [c for c in ids if isinstance(c, str)]), scheme)  # BraTS-PED: either
    except UserError as e:
        raise DatasetError(f"datalist {path}: {e}") from None
    given = raw.get("channels")
    if given is not None and (not isinstance(given, list) or len(given) != len(desc.channels)
                              or not all(isinstance(c, str) for c in given)):
        names = "its channel names" if isinstance(given, list) and len(given) == len(desc.channels) else (
            f"{len(desc.channels)} channel name(s)")
        raise DatasetError(f"datalist {path}: \"channels\" is {given!r}, not {names}: its label scheme {desc.name} has "
                           f"{len(desc.channels)} channel(s) ({', '.join(desc.channels)}); fix \"channels\" or "
                           f"rewrite the datalist with: python -m pipeline datalist DATASET_DIR --out {path}")
    return tuple(desc.channels)


def _listed_order(path: Path, raw: dict, channels: Sequence[str]) -> list[int] | None:
    """Where each of ``channels`` (the scheme's, in its order) is in the datalist's items, by name: None when its
    ``channels`` (the order its items list their images in) are the scheme's order or absent.

    Raises:
        DatasetError: ``channels`` that do not name the scheme's channels once each.
    """
    given = raw.get("channels")
    if given is None:
        return None
    try:
        return order_by_name(given, channels)  # the one matching by name, as a dataset's channels are matched
    except ValueError:
        raise DatasetError(f"datalist {path}: \"channels\" {given} do not name the channels of its label scheme "
                           f"({', '.join(channels)}) once each; fix \"channels\" (the order the items list their "
                           "images in) or rewrite the datalist with: python -m pipeline datalist DATASET_DIR "
                           f"--out {path}") from None


def _refuse_duplicate_ids(path: Path, parts: dict[str, list[dict]], zoo: bool) -> None:
    seen: dict[str, tuple[str, dict]] = {}
    owner: dict[object, str] = {}  # each file (resolved, or by inode) -> the case that lists it
    for section, items in parts.items():
        for it in items:
            cid = it["case"]
            for f in (*it["image"], *([it["label"]] if it.get("label") else [])):
                key = _file_key(f)
                if key in owner and owner[key] != cid:
                    raise DatasetError(
                        f"datalist {path}: cases {owner[key]} and {cid} list the same file {f}: one case under two "
                        "ids (in two folds it would validate the model that trained on it); keep one of the two")
                owner.setdefault(key, cid)
            folded = output_key(cid)  # BraTS2021_00000 and brats2021_00000 write one file on macOS and Windows
            if folded not in seen:
                seen[folded] = (section, it)
                continue
            other, first = seen[folded]
            if zoo and {other, section} == {"training", "validation"}:
                raise DatasetError(
                    f"datalist {path}: case {cid} is both a validation case ({Path(first['image'][0]).name}) and a "
                    f"training case ({Path(it['image'][0]).name}) of this model-zoo datalist; a case must not "
                    "validate the model it trains: remove it from one of the two lists")
            twice = f"case id {cid} is used twice" if first["case"] == cid else (
                f"case ids {first['case']} and {cid} differ only in letter case, one output file where letter case "
                "is ignored (macOS, Windows)")
            raise DatasetError(
                f"datalist {path}: {twice} ({other}: {first['image'][0]}; {section}: "
                f"{it['image'][0]}); outputs are named <case>.nii.gz, so ids must be unique: remove the duplicate "
                "or rename one case")


def _file_key(path: str) -> object:
    """What identifies a file whatever path reaches it: its device and inode (its resolved path if it cannot be
    read)."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return st.st_dev, st.st_ino


#: An nnU-Net image file name: ``<case>_<XXXX>.nii[.gz]``, XXXX the channel number.
_CHANNEL_NUMBER = re.compile(r"_(\d{4})\.nii(\.gz)?$")


def _numbered_images(images: list[str], where: str, declared: bool = True) -> list[str]:
    """Image files named ``<case>_XXXX`` (nnU-Net) in channel order: reordered by XXXX when listed otherwise (the
    names say it); refused when the numbers are not 0..N-1 once each. Other names keep the listed order where the
    datalist declares it (``declared``: its ``"channels"``), or where one file is unnumbered and the others are in
    their own places; else they are refused."""
    numbers = [int(m.group(1)) if (m := _CHANNEL_NUMBER.search(Path(p).name)) else None for p in images]
    if any(n is None for n in numbers):  # as `_ordered_images`: one unnumbered file is the channel the others leave
        misplaced = any(n is not None and n != i for i, n in enumerate(numbers))
        if (numbers.count(None) > 1 or misplaced) and not declared:
            _undeclared_order(images, numbers.index(None), where, numbered=True)
        return images
    if sorted(numbers) != list(range(len(images))):
        names = ", ".join(Path(p).name for p in images)
        raise DatasetError(f"{where}: image files {names} are numbered {numbers}; an nnU-Net case lists channels "
                           f"_0000 to _{len(images) - 1:04d} once each: fix the list")
    if numbers != sorted(numbers):
        logger.info("%s: image files listed as channels %s (their names say so); reordered to 0..%d", where,
                    numbers, len(images) - 1)
    return [images[numbers.index(i)] for i in range(len(images))]


def folds_present(dl: dict) -> list[int]:
    return sorted({int(it["fold"]) for it in dl.get("training", [])})


def split_items(dl: dict, fold: int | str = 0) -> tuple[list[dict], list[dict]]:
    """``(train, validation)`` items of a datalist: fold ``fold`` of its labelled cases validates, the rest train.

    A model-zoo datalist (``"split": "model-zoo"``) has one split: ``fold`` 0, its validation cases. ``fold``
    ``"all"`` (`pipeline.core.config.ALL_FOLDS`, nnU-Net's ``fold all``): every labelled case trains, none validates.

    Raises:
        DatasetError: no labelled case, ``fold`` is not one of the datalist's folds, or not 0 for a model-zoo list.
    """
    items = dl.get("training", [])
    if dl.get("split") == "model-zoo" and fold != ALL_FOLDS:
        if fold != MODEL_ZOO_FOLDS["validation"]:
            raise DatasetError(f"fold {fold}: a model-zoo datalist has one split, its validation cases: use --fold 0")
        if not any(int(it["fold"]) == fold for it in items):
            raise DatasetError(f"the model-zoo datalist {dl.get('name', '')} has no validation case; add a "
                               "\"validation\" list to it, or write a datalist with folds: python -m pipeline "
                               "datalist DATASET_DIR --out datalist.json")
    if not items:
        raise DatasetError("the datalist has no labelled case (no segmentation file found): training needs labels")
    if fold == ALL_FOLDS:
        return list(items), []
    present = folds_present(dl)
    if fold not in present:
        raise DatasetError(f"fold {fold} is not in the datalist (folds present: {present}); pass --fold one of those")
    train = [it for it in items if int(it["fold"]) != fold]
    val = [it for it in items if int(it["fold"]) == fold]
    return train, val
