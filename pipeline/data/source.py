"""The data of one stage, resolved once: a `DataSource` (a dataset folder or a datalist, a label scheme, folds).

Each stage of the bundle builds one (``common.yaml``'s ``data`` id) and reads everything from it: the layout and
the cases (scanned once), the datalist (read and validated once), the label scheme (``auto`` resolved here and
nowhere else), its `Description`, the training split and the cases to segment, each after the data check.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path

from pipeline.core.config import ALL_FOLDS, as_bool, as_fold, as_infer_fold, as_int, as_path
from pipeline.core.distributed import computed_on_main_process
from pipeline.core.errors import UserError
from pipeline.core.guard import OutputGuard
from pipeline.data.check import (
    DATA_CHECK_MODES,
    DatasetCheckError,
    check_cases,
    log_problems,
    progress_logger,
)
from pipeline.data.datalist import (
    datalist_from_cases,
    datalist_in_scheme_order,
    datalist_layout,
    folds_present,
    read_datalist,
    split_items,
)
from pipeline.data.labels import BUILTIN, Description, describe, scheme_name
from pipeline.data.layouts import (
    LAYOUTS,
    Case,
    DatasetError,
    DatasetScan,
    LayoutInfo,
    in_scheme_order,
    output_guard,
    resolve_scheme,
    scan_dataset,
    usable_cases,
    with_case_ids,
)
from pipeline.data.layouts.brats import single_case

logger = logging.getLogger(__name__)


def _path_or_none(value: object, name: str) -> str | None:
    """A path option as MONAI's CLI hands it over (`as_path`); "" or None for none."""
    return None if value is None or value == "" else as_path(value, name)


class DataSource:
    """The data a stage reads: ``dataset_dir`` (any layout) or a ``datalist`` JSON, and how to read it.

    Args:
        dataset_dir: a dataset folder (or one case's folder, for inference); with a datalist, only the data root
            of a model-zoo list's relative paths.
        datalist: a datalist JSON (`pipeline.data.datalist.read_datalist`); ""/None: discover ``dataset_dir``.
        label_scheme: ``auto`` (the datalist's or the layout's), a built-in scheme or ``nnunet:<dataset.json>``.
        folds, seed: the folds of a discovered dataset.
        check: the data check of training (``strict``, ``skip``, ``off``) and inference (``off`` skips it).
        jobs: worker processes of the data check.

    Every property is computed on first use and kept: one scan, one datalist read, one scheme.
    """

    def __init__(self, dataset_dir: object = None, datalist: object = None, label_scheme: str | None = "auto", *,
                 folds: object = 5, seed: object = 0, check: str = "strict", jobs: object = 1,
                 labels: object = True) -> None:
        self.dataset_dir = _path_or_none(dataset_dir, "dataset_dir")
        self.datalist_path = _path_or_none(datalist, "datalist")
        self.label_scheme = scheme_name(label_scheme, auto=True)
        # whether this stage reads the labels (training, the check, the evaluation): a given scheme is then read
        # against the data's own numbering (`resolve_scheme`); inference reads none and writes the scheme's numbering
        self.labels = as_bool(labels, "labels")
        self.folds = as_int(folds, "folds", minimum=2)
        self.seed = as_int(seed, "seed", minimum=0)
        if check not in DATA_CHECK_MODES:
            raise UserError(f"--data_check {check!r} is unknown; expected one of {', '.join(DATA_CHECK_MODES)}")
        self.check = check
        self.jobs = as_int(jobs, "check_jobs", minimum=1)

    def __repr__(self) -> str:
        where = f"datalist={self.datalist_path!r}" if self.datalist_path else f"dataset_dir={self.dataset_dir!r}"
        return f"DataSource({where}, label_scheme={self.label_scheme!r})"

    # ---- what the data is ---------------------------------------------------------------------------------

    @functools.cached_property
    def single(self) -> tuple[Case, LayoutInfo] | None:
        """One case whose files lie directly in ``dataset_dir`` (nnU-Net's ``-i`` habit), or None."""
        if self.datalist_path or not self.dataset_dir:
            return None
        found = single_case(self.dataset_dir)
        if found is None:
            return None
        case, info = found
        one = in_scheme_order(DatasetScan(Path(self.dataset_dir), info, [case]), self.label_scheme, labels=self.labels)
        return one.cases[0], info

    @functools.cached_property
    def scan(self) -> DatasetScan:
        """The dataset folder's layout, cases and problems of discovery (scanned once).

        Raises:
            DatasetError: no dataset folder, or none whose layout can be detected; an error of the whole dataset
                (an MSD modality table that cannot be read: every case's channel order would be a guess), which
                no ``--data_check`` leaves out; an MSD labels table that contradicts Task01 only where labels are
                read (not for inference: ``labels`` false).
        """
        if not self.dataset_dir:
            raise DatasetError("neither a datalist nor a dataset_dir was given; pass --dataset_dir /path/to/BraTS")
        scan = in_scheme_order(scan_dataset(self.dataset_dir), self.label_scheme, labels=self.labels)
        if not self.labels:  # a stage that reads no label (inference) is not stopped by their numbering, but by
            # test images it cannot read (imagesTs/ on a share not mounted): it segments every case
            scan.problems[:] = [dataclasses.replace(p, severity="error") if p.unlabelled_only else p
                                for p in scan.problems if not p.labels_only]
        whole = [p.message for p in scan.errors if not p.case]  # of the dataset, not of a case: no case can be left out
        if whole:
            raise DatasetError("\n".join(whole))
        return scan

    @functools.cached_property
    def datalist_file(self) -> dict:
        """The datalist JSON file read and validated once (`read_datalist`): its items in its own scheme's channel
        order.

        Raises:
            DatasetError: no datalist given, or one that cannot be used.
        """
        if not self.datalist_path:
            raise DatasetError("no datalist was given; pass --datalist datalist.json")
        return read_datalist(self.datalist_path, self.dataset_dir)

    @functools.cached_property
    def datalist(self) -> dict:
        """The datalist: the JSON file's (`datalist_file`), or one built from the scanned dataset; either way each
        item's images in the channel order of the scheme in use, matched by name (`in_scheme_order`, for a
        datalist through `datalist_in_scheme_order`).

        Raises:
            DatasetError: a datalist that cannot be used, a given scheme whose channels cannot be matched to the
                data's by name, or a dataset with no case.
        """
        if self.datalist_path:
            return datalist_in_scheme_order(self.datalist_file, self.layout, self.label_scheme, self.datalist_path,
                                            labels=self.labels)
        scan = self.scan
        if not scan.cases and not scan.errors:
            raise DatasetError(f"no case found in {scan.root} ({LAYOUTS[scan.layout.layout].example})")
        return datalist_from_cases(scan.cases, scan.root.name, scan.layout.layout, self.scheme, self.folds, self.seed)

    @functools.cached_property
    def layout(self) -> LayoutInfo:
        """The data's layout: the datalist's (`datalist_layout`), the single case's or the dataset folder's.

        Raises:
            DatasetError: neither a datalist nor a dataset folder whose layout can be detected.
        """
        if self.datalist_path:
            raw = self.datalist_file
            name = datalist_layout(raw)
            info = LayoutInfo(name, str(raw.get("label_scheme") or LAYOUTS[name].label_scheme),
                              f"datalist {self.datalist_path}", LAYOUTS[name].title,
                              named=bool(raw.get("layout")),  # no layout key: no naming to read
                              described=bool(raw.get("label_scheme")))  # none: its numbering unknown
            ids = [it["case"] for key in ("training", "test") for it in raw.get(key, [])]
            return with_case_ids(info, ids, recorded=True)  # BraTS-PED ids: auto only with a recorded scheme
        if not self.dataset_dir:
            raise DatasetError("label_scheme auto needs a dataset_dir or a datalist to detect the layout from")
        return self.single[1] if self.single else self.scan.layout

    @functools.cached_property
    def scheme(self) -> str:
        """The label scheme in use: the one given, else the datalist's, the case's or the layout's.

        Raises:
            DatasetError: ``auto`` with neither a datalist nor a dataset folder whose layout can be detected.
            UserError: a given scheme that contradicts the data's numbering (`resolve_scheme`).
        """
        if self.label_scheme != "auto" and not self.datalist_path and not (
                self.dataset_dir and Path(self.dataset_dir).expanduser().exists()):
            return self.label_scheme  # no data to check it against (a network built or exported on its own)
        return resolve_scheme(self.layout, self.label_scheme, labels=self.labels)

    @functools.cached_property
    def description(self) -> Description:
        """The description the network is built for: the scheme's; with ``auto`` and no dataset to read (exporting
        or checking a network on its own) the bundle's default ``brats`` (4 channels, 3 regions), logged."""
        if (self.label_scheme == "auto" and not self.datalist_path
                and not (self.dataset_dir and Path(self.dataset_dir).expanduser().is_dir())):
            logger.info("no dataset at %s: the network is built for the default description brats (4 channels, "
                        "3 regions)", self.dataset_dir)
            return BUILTIN["brats"]
        return describe(self.scheme)

    @functools.cached_property
    def guard(self) -> OutputGuard:
        """The output guard of this data: every file of every case (of the datalist, or found in the dataset folder),
        the dataset folder, and the datalist file (never written or deleted)."""
        if self.datalist_path:
            dl = self.datalist
            items = [*dl.get("training", []), *dl.get("test", [])]
        elif self.single:
            items = [self.single[0].to_item()]
        else:
            items = [c.to_item() for c in self.scan.cases]
        files = [f for it in items for f in Case.from_item(it).files]
        roots = [self.dataset_dir] if self.dataset_dir and Path(self.dataset_dir).expanduser().is_dir() else []
        return output_guard(files, roots, protect=[self.datalist_path] if self.datalist_path else [])

    @property
    def where(self) -> str:
        """The datalist or the dataset folder, for messages."""
        return str(self.datalist_path or self.dataset_dir)

    # ---- training ----------------------------------------------------------------------------------------------

    def split(self, fold: object = 0) -> tuple[list[dict], list[dict]]:
        """``(train, validation)`` items: fold ``fold`` of the labelled cases validates, the rest train (``"all"``:
        every case trains, none validates).

        Raises:
            DatasetError: no labelled case, or ``fold`` is not one of the datalist's folds.
        """
        return split_items(self.datalist, as_fold(fold))

    def checked_split(self, fold: object = 0) -> tuple[list[dict], list[dict]]:
        """`split` after the data check of the cases training uses (``check``: strict, skip or off).

        With several processes (multi_gpu_train.yaml) rank 0 alone checks and sends the split to the others.

        Raises:
            DatasetCheckError: ``strict`` and an error; ``skip`` and no usable training or validation case left.
            DatasetError: the folder or datalist cannot be used at all.
        """
        fold = as_fold(fold)
        if self.check == "off":
            return self.split(fold)
        return computed_on_main_process(self._checked_split, fold)

    def _checked_split(self, fold: int | str) -> tuple[list[dict], list[dict]]:
        started = time.perf_counter()
        if self.datalist_path:
            problems = []
            logger.info("datalist %s: layout %s, label scheme %s", self.datalist_path, self.layout.layout, self.scheme)
        else:
            logger.info("dataset %s: %s", self.scan.root, self.scan.layout)
            problems = list(self.scan.problems)
        train, val = self.split(fold)
        cases = [Case.from_item(it) for it in (*train, *val)]
        problems += check_cases(cases, self.scheme, jobs=self.jobs, progress=progress_logger(started),
                                layout=self.layout.layout)
        problems.sort(key=lambda p: p.case)  # stable: each case's problems stay in file order
        errors = [p for p in problems if p.severity == "error"]
        log_problems([p for p in problems if p.severity != "error"])
        logger.info("data check: discovery and %d labelled case(s) in %.1f s: %d error(s), %d warning(s)",
                    len(cases), time.perf_counter() - started, len(errors), len(problems) - len(errors))
        if errors and self.check == "strict":
            bad = list(dict.fromkeys(p.case or "(dataset)" for p in errors))
            recheck = ("training checks its cases again when it starts" if self.datalist_path else  # check: folders
                       f"re-check with: python -m pipeline check {self.where}")
            raise DatasetCheckError(
                f"training refuses the dataset {self.where}: {len(errors)} error(s) in {len(bad)} case(s) "
                f"({', '.join(bad[:10])}{', ...' if len(bad) > 10 else ''}):\n"
                + "\n".join(p.message for p in errors)
                + f"\nFix or remove these cases ({recheck}), or pass "
                "--data_check skip to train on the other cases.",
                errors,
            )
        if errors:
            bad = {p.case for p in errors}
            for cid in dict.fromkeys(p.case for p in errors):
                logger.warning("data check: leaving out case %s: %s", cid or "(dataset)",
                               " | ".join(p.message for p in errors if p.case == cid))
            train = [it for it in train if it["case"] not in bad]
            val = [it for it in val if it["case"] not in bad]
            if not train or (not val and fold != ALL_FOLDS):
                raise DatasetCheckError(f"after leaving out the {len(bad)} case(s) with errors, no training or no "
                                        f"validation case is left (fold {fold}); fix the cases listed above", errors)
        return train, val

    # ---- inference and evaluation ------------------------------------------------------------------------------

    def infer_fold(self, fold: object) -> int | None:
        """``fold`` as an int (None for every case: None or negative); refused when set without a datalist.

        Raises:
            UserError: a fold that is not a whole number, or a fold without a datalist.
        """
        value = as_infer_fold(fold)
        if value is None:
            return None
        if not self.datalist_path:
            raise DatasetError(
                f"--infer_fold {value} needs --datalist: folds are defined by a datalist (python -m pipeline datalist "
                "DATASET_DIR --out datalist.json); without one every case of --dataset_dir is segmented, so drop "
                "--infer_fold")
        return value

    def inference_items(self, fold: object = None, *, partial: bool = False) -> list[dict]:
        """The items to segment: every case of ``dataset_dir`` (labelled or not; a case folder gives its case), or
        of the datalist (with ``fold``: that fold's labelled cases only).

        ``partial``: a dataset folder's complete cases even when discovery found broken ones (a contrast missing):
        inference segments those and reports the others as failed (`checked_inference_items`); else such a
        dataset is refused, every broken case named (evaluation, whose reference would silently lack them).

        Raises:
            DatasetError: ``fold`` set without a datalist, or not one of the datalist's folds; a discovery error
                (not ``partial``), or no case at all.
        """
        fold = self.infer_fold(fold)
        if self.datalist_path:
            dl = self.datalist
            if fold is None:
                return [*dl.get("training", []), *dl.get("test", [])]
            present = folds_present(dl)
            if fold not in present:
                raise DatasetError(f"fold {fold} is not in the datalist {self.datalist_path} (folds present: "
                                   f"{present or 'none'}); pass --infer_fold one of those, or drop it to segment "
                                   "every case")
            return [it for it in dl["training"] if int(it["fold"]) == fold]
        if self.single:
            return [self.single[0].to_item()]
        if partial and self.scan.cases:
            return [c.to_item() for c in self.scan.cases]
        return [c.to_item() for c in usable_cases(self.scan)]

    def checked_inference_items(self, fold: object = None, *, report: object = None) -> list[dict]:
        """`inference_items` whose images pass the data check (``check`` ``off`` skips it).

        A case with an error is logged and left out, and ``report.fail(case, reason)`` records it; labels are not
        checked (inference does not read them).
        """
        started = time.perf_counter()
        fold = self.infer_fold(fold)
        if self.datalist_path:
            items, problems = self.inference_items(fold), []
        elif self.single:
            logger.info("%s: %s", self.dataset_dir, self.single[1].reason)
            items, problems = [self.single[0].to_item()], []
        else:
            scan = self.scan
            logger.info("dataset %s: %s", scan.root, scan.layout)
            items, problems = [c.to_item() for c in scan.cases], list(scan.problems)
            if not items and not scan.errors:
                raise DatasetError(f"no case found in {scan.root} ({LAYOUTS[scan.layout.layout].example})")
        if self.check != "off":
            problems += check_cases([Case.from_item(it) for it in items], self.scheme, jobs=self.jobs, labels=False,
                                    progress=progress_logger(started))
        problems.sort(key=lambda p: p.case)
        log_problems([p for p in problems if p.severity != "error"])
        errors = [p for p in problems if p.severity == "error"]
        for p in errors:
            if report is not None:
                report.fail(p.case or "(dataset)", p.message)
            else:
                logger.error("%s", p.message)
        bad = {p.case for p in errors}
        good = [it for it in items if it["case"] not in bad]
        total = len({it["case"] for it in items} | {p.case for p in errors if p.case})
        logger.info("data check: %d of %d case(s) can be segmented (%.1f s)", len(good), total,
                    time.perf_counter() - started)
        return good
