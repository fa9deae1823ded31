"""One provenance record per output folder: which model wrote each file, with which settings, from which inputs.

``<folder>/provenance.json``::

    {"version": 2, "cases": {"<case>": {"model": "<model id>", "file": "<case>.nii.gz",
                                        "inputs": [{"path": ..., "size": ..., "mtime_ns": ..., "hash": ...}, ...],
                                        "probabilities": "<model id>" | null,
                                        "scheme": "<label scheme name>"}}}

The model id hashes the checkpoint and the settings that change the output (`pipeline.model.weights.model_id`);
an input's identity is its resolved path, size, modification time and a fast hash of its first and last 64 KiB
(`input_identity`); the scheme is the label numbering the segmentation is written in, by name (``brats2023``,
``msd``, ``nnunet:<dataset.json>``; `pipeline.data.labels.describe`), absent from records written before it was
kept. Inference skips a case only when model and inputs match; evaluation refuses a folder that mixes models or
whose inputs changed since, unless told otherwise, and a segmentation written in another numbering than the one it
is scored in (`pipeline.evaluation.reference.scoring_scheme`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_text

#: The record's file name in an output folder.
PROVENANCE = "provenance.json"
#: Bytes hashed at each end of an input file.
HASHED_BYTES = 1 << 16


def input_identity(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """``[{"path", "size", "mtime_ns", "hash"}]`` of each file (resolved path; a missing file has size -1)."""
    out = []
    for p in paths:
        path = Path(p).expanduser().resolve()
        try:
            st = path.stat()
            h = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as f:
                h.update(f.read(HASHED_BYTES))
                if st.st_size > HASHED_BYTES:
                    f.seek(max(HASHED_BYTES, st.st_size - HASHED_BYTES))
                    h.update(f.read(HASHED_BYTES))
            out.append({"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": h.hexdigest()})
        except OSError:
            out.append({"path": str(path), "size": -1, "mtime_ns": 0, "hash": ""})
    return out


class Provenance:
    """The provenance record of one output folder (module docstring), read once and written whole after each case.

    Raises (when read):
        UserError: the file exists but is not such a record (JSON of another shape, or not JSON), naming it and
            the ways out.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / PROVENANCE
        self.cases: dict[str, dict] = self._read()

    def _read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        fix = (f"delete {self.path} (the segmentations beside it are then of unknown origin: re-run inference with "
               "--overwrite true to replace them), or pass another --output_dir")
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path} cannot be read ({type(e).__name__}); {fix}") from None
        cases = raw.get("cases") if isinstance(raw, dict) and raw.get("version") == 2 else raw
        if not isinstance(cases, dict) or not all(isinstance(v, dict) for v in cases.values()):
            raise UserError(f"{self.path} is not a provenance record (expected {{case: {{model, file, inputs}}}}, "
                            f"got {type(cases).__name__}); {fix}")
        return {str(k): dict(v) for k, v in cases.items()}

    def model_of(self, case: str) -> str | None:
        """The model that wrote ``case``, or None (no record)."""
        return self.cases.get(case, {}).get("model")

    def matches(self, case: str, model: str | None, inputs: list[dict]) -> bool:
        """Whether ``case`` was written by ``model`` from inputs of this identity (path, size, time, hash)."""
        entry = self.cases.get(case, {})
        return entry.get("model") == model and entry.get("inputs") == inputs

    def input_paths(self, case: str) -> list[str]:
        """The resolved paths of the files ``case`` was segmented from (empty: unknown)."""
        return [str(r["path"]) for r in self.cases.get(case, {}).get("inputs") or []]

    def other_inputs(self, case: str, files: Iterable[str | os.PathLike]) -> list[str]:
        """The recorded inputs of ``case`` when they are other files than ``files`` (by resolved path: another case
        of the same name), else empty (the same files, or unknown). Changed contents are `changed_inputs`."""
        recorded = self.input_paths(case)
        now = {str(Path(f).expanduser().resolve()) for f in files}
        return recorded if recorded and set(recorded) != now else []

    def changed_inputs(self, case: str) -> list[str]:
        """The recorded inputs of ``case`` that differ from the files on disk now (empty: unchanged, or unknown)."""
        recorded = self.cases.get(case, {}).get("inputs") or []
        now = input_identity([r["path"] for r in recorded])
        return [r["path"] for r, n in zip(recorded, now, strict=True) if r != n]

    def record(self, case: str, *, model: str | None, file: str, inputs: list[dict],
               probabilities: str | None = None, trained: bool = False, scheme: str | None = None) -> None:
        """Record ``case`` as written now, and save the record (atomically). ``trained``: the case was one of the
        model's training cases (its run.json's split), so its Dice is not a held-out score. ``scheme``: the name of
        the label scheme its segmentation is numbered in (None: not known, nothing recorded)."""
        self.cases[case] = {"model": model, "file": file, "inputs": inputs, "probabilities": probabilities}
        if trained:
            self.cases[case]["trained"] = True
        if scheme is not None:
            self.cases[case]["scheme"] = str(scheme)
        self.save()

    def schemes(self, cases: Iterable[str]) -> Mapping[str, list[str]]:
        """``{label scheme name: [cases]}`` of those of ``cases`` whose record names the numbering their segmentation
        was written in; a case without one (no record, or a record from before schemes were kept) is in none."""
        out: dict[str, list[str]] = {}
        for case in cases:
            scheme = self.cases.get(case, {}).get("scheme")
            if scheme:
                out.setdefault(str(scheme), []).append(case)
        return out

    def trained_cases(self, cases: Iterable[str]) -> list[str]:
        """Those of ``cases`` whose segmentation was written by a model that trained on them."""
        return [c for c in cases if self.cases.get(c, {}).get("trained")]

    def forget(self, case: str) -> None:
        self.cases.pop(case, None)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"version": 2, "cases": self.cases}, indent=1, sort_keys=True),
                          durable=True)  # fsynced as the segmentations it describes are

    def models(self, cases: Iterable[str]) -> Mapping[str, list[str]]:
        """``{model id or "unknown": [cases]}`` of ``cases``."""
        out: dict[str, list[str]] = {}
        for case in cases:
            out.setdefault(self.model_of(case) or "unknown", []).append(case)
        return out
