"""One provenance record per output folder: which model wrote each file, with which settings, from which inputs.

``<folder>/provenance.json``::

    {"version": 2, "cases": {"<case>": {"model": "<model id>", "file": "<case>.nii.gz",
                                        "inputs": [{"path": ..., "size": ..., "mtime_ns": ..., "hash": ...,
                                                    "sha256": ..., "channel"?: ..., "volume"?: ...}, ...],
                                        "output": {"size": ..., "mtime_ns": ..., "hash": ..., "sha256": ...},
                                        "probabilities": "<model id>" | null,
                                        "scheme": "<label scheme name>"}}}

The model id hashes the checkpoint and the settings that change the output (`pipeline.model.weights.model_id`); an
input's identity is its resolved path, size, modification time and a fast hash of its first and last 64 KiB
(`input_identity`; a 4D file is one input per channel, with the volume read for it: `input_refs`), and, recorded at
inference, the sha256 of its whole content, by which a dataset moved or copied since is recognised
(`Provenance.input_state`); the written file's own identity (``output``) ties the record to that file, not to its
name, so a file copied over it since is of unknown origin (`Provenance.entry`); the scheme is the label numbering
the segmentation is written in, by name (``brats2023``, ``msd``, ``nnunet:<dataset.json>``;
`pipeline.data.labels.describe`), absent from records written before it was kept. Inference skips a case only when
model and inputs match; evaluation refuses a folder that mixes models, holds segmentations of other images or whose
inputs changed since, unless told otherwise, and a segmentation written in another numbering than the one it is
scored in (`pipeline.evaluation.reference.scoring_scheme`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_text, file_sha256, read_json
from pipeline.core.nifti import is_nifti

#: The record's file name in an output folder.
PROVENANCE = "provenance.json"
#: Bytes hashed at each end of an input file.
HASHED_BYTES = 1 << 16

#: The mark of a case whose id names a training case of the model that segmented it but whose images are not that
#: case's (`pipeline.model.held_out.trained_on`): another patient under a training id, or the same one saved again.
ID_ONLY = "id"


def id_only_note(marks: Mapping[str, object]) -> str:
    """What a message about the cases a model trained on adds for those marked `ID_ONLY` (``""`` for none)."""
    only = [case for case, mark in marks.items() if mark == ID_ONLY]
    if not only:
        return ""
    return (f" ({len(only)} of them only share their id with a training case, their images are others: "
            f"{', '.join(only[:5])}{' ...' if len(only) > 5 else ''}; if they are other patients, give them their "
            "own ids)")


#: A file's whole-content digest by (resolved path, size, mtime_ns): a dataset is hashed once per process.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """The sha256 of the whole file at ``path`` (hex; "" when it cannot be read)."""
    path = Path(path).expanduser().resolve()
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _DIGESTS:
            _DIGESTS[key] = file_sha256(path)
        return _DIGESTS[key]
    except OSError:
        return ""


#: One input of a segmentation: a file, or a file named by the channel it feeds and, for a 4D file, the volume read
#: for it (``{"path": file, "channel"?: name, "volume"?: index}``; `input_refs`).
InputRef = str | os.PathLike | Mapping


def input_refs(images: Iterable[str | os.PathLike], channel_index: Iterable[int] | None = None,
               channels: Sequence[str] | None = None) -> list[InputRef]:
    """A case's inputs in its channel order: its image files, or, for one 4D file read through a ``channel_index``
    (a Decathlon case), that file's volume ``channel_index[i]`` for channel ``i``; with ``channels`` (the names of
    those channels, canonical: `pipeline.data.labels.canonical_channel`), each input is named by its channel, so that
    two lists are compared channel by channel whatever their order (the data's, a model's). Which file, and which
    volume, feeds which channel is part of what a segmentation was made from: another modality table or another
    ``channel_names`` over the same files are other inputs."""
    files = [str(f) for f in images]
    index = list(channel_index) if channel_index is not None and len(files) == 1 else None
    refs: list[dict] = ([{"path": files[0], "volume": int(v)} for v in index] if index is not None
                        else [{"path": f} for f in files])
    if channels is not None and len(channels) == len(refs):
        refs = [{**r, "channel": str(c)} for r, c in zip(refs, channels, strict=True)]
    return [r if len(r) > 1 else r["path"] for r in refs]


def ref_path(ref: InputRef) -> str:
    """The file of an input (`InputRef`)."""
    return str(ref["path"]) if isinstance(ref, Mapping) else str(ref)


#: What an input record holds besides the file's identity: the channel it fed, and the volume of a 4D file.
_ROLE = ("channel", "volume")


def _refs_of(recorded: Iterable[Mapping]) -> list[InputRef]:
    """The inputs a record names (`input_identity`'s records back to `InputRef`)."""
    return [{"path": r["path"], **{k: r[k] for k in _ROLE if k in r}} if any(k in r for k in _ROLE)
            else str(r["path"]) for r in recorded]


def _without(ref: InputRef, key: str) -> InputRef:
    """``ref`` without ``key`` (a plain path when nothing else is left)."""
    if not isinstance(ref, Mapping) or key not in ref:
        return ref
    rest = {k: v for k, v in ref.items() if k != key}
    return rest if len(rest) > 1 else str(rest["path"])


def _aligned(recorded: Sequence[Mapping], files: Iterable[InputRef] | None) -> tuple[list[Mapping], list[InputRef]]:
    """``recorded`` and ``files`` (None: the recorded inputs as named) in an order in which they compare position by
    position: by channel name where both name every input's channel, else as listed (a position is a channel);
    what only one side records (the channel; a 4D file's volumes, in a record from before they were kept) is left
    out of the comparison."""
    refs = _refs_of(recorded) if files is None else list(files)
    if refs and all(isinstance(r, Mapping) and "channel" in r for r in refs) and all("channel" in r for r in recorded):
        return sorted(recorded, key=lambda r: str(r["channel"])), sorted(refs, key=lambda r: str(r["channel"]))
    recorded = [{k: v for k, v in r.items() if k != "channel"} for r in recorded]
    refs = [_without(r, "channel") for r in refs]
    if any(isinstance(r, Mapping) for r in refs) and not any("volume" in r for r in recorded):
        refs = list(dict.fromkeys(ref_path(r) for r in refs))  # a 4D file recorded as the file alone
    return recorded, refs


def input_identity(paths: Iterable[InputRef], *, digest: bool = False) -> list[dict]:
    """``[{"path", "size", "mtime_ns", "hash"}]`` of each input (resolved path; a missing file has size -1; an
    input named by its channel, or a 4D file's volume, `input_refs`, adds its ``"channel"`` and ``"volume"``), with
    ``digest`` also its whole content's ``"sha256"`` (`file_digest`; what inference records)."""
    out: list[dict] = []
    seen: dict[str, dict] = {}  # a 4D file's channels: its identity read once
    for ref in paths:
        path = Path(ref_path(ref)).expanduser().resolve()
        role = {k: ref[k] for k in _ROLE if k in ref} if isinstance(ref, Mapping) else {}
        if str(path) in seen:
            out.append({**seen[str(path)], **role})
            continue
        try:
            st = path.stat()
            h = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as f:
                h.update(f.read(HASHED_BYTES))
                if st.st_size > HASHED_BYTES:
                    f.seek(max(HASHED_BYTES, st.st_size - HASHED_BYTES))
                    h.update(f.read(HASHED_BYTES))
            found = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": h.hexdigest()}
            if digest:
                found["sha256"] = file_digest(path)
        except OSError:
            found = {"path": str(path), "size": -1, "mtime_ns": 0, "hash": ""}
        seen[str(path)] = found
        out.append({**found, **role})
    return out


def _fast(identity: Iterable[Mapping]) -> list[dict]:
    """``identity`` without its whole-content digests (what a re-read compares cheaply)."""
    return [{k: v for k, v in r.items() if k != "sha256"} for r in identity]


def _unchanged(recorded: Mapping, now: Mapping) -> bool:
    """Whether the file ``now`` (one `input_identity` record) holds what ``recorded`` describes: the same size, time
    and fast hash, or (touched or copied since) the same size and, read whole, the recorded sha256."""
    if any(now.get(k) != recorded.get(k) for k in _ROLE):
        return False  # another channel, or another volume of the file read for it
    if all(now.get(k) == recorded.get(k) for k in ("size", "mtime_ns", "hash")):
        return True
    return bool(recorded.get("sha256")) and now["size"] == recorded.get("size") and (
        file_digest(now["path"]) == recorded["sha256"])


#: How a case's files stand to the files its segmentation was made from (`Provenance.input_state`).
SAME, MOVED, CHANGED, OTHER, UNKNOWN = "same", "moved", "changed", "other", "unknown"


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
               "--overwrite true to replace them), or segment into another folder")
        try:
            raw = read_json(self.path)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path} cannot be read ({type(e).__name__}); {fix}") from None
        cases = raw.get("cases") if isinstance(raw, dict) and raw.get("version") == 2 else raw
        if not isinstance(cases, dict) or not all(isinstance(v, dict) for v in cases.values()):
            raise UserError(f"{self.path} is not a provenance record (expected {{case: {{model, file, inputs}}}}, "
                            f"got {type(cases).__name__}); {fix}")
        for case, entry in cases.items():
            inputs = entry.get("inputs") or []
            if not isinstance(inputs, list) or not all(isinstance(i, dict) and isinstance(i.get("path"), str)
                                                       for i in inputs):
                raise UserError(f"{self.path}: case {case}'s inputs are not a list of {{path, size, mtime_ns, hash}} "
                                f"records; {fix}")
            if not isinstance(entry.get("output") or {}, dict):
                raise UserError(f"{self.path}: case {case}'s output is not a {{size, mtime_ns, hash, sha256}} record; "
                                f"{fix}")
        return {str(k): dict(v) for k, v in cases.items()}

    def entry(self, case: str) -> dict:
        """``case``'s record while ``<folder>/<file>`` is the file it describes (the ``output`` identity recorded when
        it was written: size, time and fast hash, or, copied since, its sha256), else ``{}``: a file put there since,
        another model's copied over it, is of unknown origin, whatever its name. A record written before outputs were
        identified describes its file by name only."""
        entry = self.cases.get(case, {})
        written = entry.get("output")
        if not written:
            return entry
        now = input_identity([self.folder / str(entry.get("file") or f"{case}.nii.gz")])[0]
        return entry if _unchanged(written, now) else {}

    def written_files(self) -> list[Path]:
        """The segmentations in the folder that its record describes (`entry`: still the files written), what a
        cleaner may delete as inference's; a file of the user's there, a name no case records, is not one."""
        files = {self.folder / str(e.get("file") or f"{c}.nii.gz") for c in self.cases if (e := self.entry(c))}
        return sorted(f for f in files if f.parent == self.folder and is_nifti(f.name) and f.is_file()
                      and not f.is_symlink())  # a record naming ../x, or a link: never a file of the folder's

    def replaced(self, cases: Iterable[str]) -> list[str]:
        """Those of ``cases`` with a record whose file is no longer the one it describes (`entry`): put there or
        changed since it was written, so of unknown origin."""
        return [c for c in cases if c in self.cases and not self.entry(c)]

    def probabilities_of(self, case: str, path: str | os.PathLike) -> str | None:
        """The model whose probabilities of ``case`` ``path`` is, or None: no record of them, or (their identity
        recorded) not the file recorded, a file put there since. A record from before their identity was kept
        names them by the folder alone."""
        entry = self.cases.get(case, {})
        written = entry.get("probabilities_output")
        if not entry.get("probabilities") or (written and not _unchanged(written, input_identity([path])[0])):
            return None
        return entry["probabilities"]

    def model_of(self, case: str) -> str | None:
        """The model that wrote ``case``'s file, or None (no record, or not the file recorded: `entry`)."""
        return self.entry(case).get("model")

    def input_paths(self, case: str) -> list[str]:
        """The resolved paths of the files ``case`` was segmented from, each once (empty: unknown)."""
        return list(dict.fromkeys(str(r["path"]) for r in self.cases.get(case, {}).get("inputs") or []))

    def input_state(self, case: str, files: Iterable[InputRef] | None = None) -> str:
        """How ``files`` (`input_refs`; None: the recorded inputs as they are now) stand to the inputs ``case`` was
        segmented from, decided input by input, never by guess: channel by channel where both name their channels
        (`input_refs`), else in their order (a position is a channel); a 4D file's volume is part of its input:

        - `SAME`: the same resolved paths in the same order, unchanged (size, time and fast hash; or, touched since,
          the same whole content by digest);
        - `MOVED`: other paths holding, position by position, the recorded whole contents (the dataset moved or
          copied since; a record written before digests were kept cannot say so, and is `OTHER`); the same contents
          elsewhere fed to other channels (or other volumes) are `CHANGED`;
        - `CHANGED`: the same files (in any order), changed since, missing, listed in another order, or another
          volume of a 4D file read for a channel (its modality table changed);
        - `OTHER`: other files, other or unknown contents (another case of the same name);
        - `UNKNOWN`: no inputs recorded.
        """
        recorded = self.cases.get(case, {}).get("inputs") or []  # what the record says, whatever the file now is
        if not recorded:
            return UNKNOWN
        recorded, refs = _aligned(recorded, files)
        paths = [str(r["path"]) for r in recorded]
        now = input_identity(refs)
        ordered = [r["path"] for r in now] == paths
        if ordered and all(_unchanged(r, n) for r, n in zip(recorded, now, strict=True)):
            return SAME
        if (not ordered and len(now) == len(recorded) and all(r.get("sha256") for r in recorded)
                and all(n["size"] >= 0 for n in now)):
            digests = [file_digest(n["path"]) for n in now]
            if digests == [r["sha256"] for r in recorded]:  # the same contents elsewhere
                same_roles = all(n.get(k) == r.get(k) for r, n in zip(recorded, now, strict=True) for k in _ROLE)
                return MOVED if same_roles else CHANGED  # else read through another modality table
            if sorted(digests) == sorted(r["sha256"] for r in recorded):
                return CHANGED  # the same contents elsewhere, named as other channels
        return CHANGED if sorted(r["path"] for r in now) == sorted(paths) else OTHER

    def refresh_inputs(self, case: str, files: Iterable[InputRef]) -> None:
        """Record ``files`` as ``case``'s inputs when `input_state` found them the recorded ones (`SAME` or `MOVED`)
        but their recorded identity is out of date (touched, or moved): later checks are then cheap again.
        Nothing is written when the record is current."""
        now = input_identity(files)
        if _fast(now) != _fast(self.cases.get(case, {}).get("inputs") or []):
            self.cases[case]["inputs"] = input_identity(files, digest=True)
            self.save()

    def changed_inputs(self, case: str, files: Iterable[InputRef] | None = None) -> list[str]:
        """The files of the inputs of ``case`` (``files`` as `input_state` takes them; None: the recorded ones as
        they are now) that are not what it was segmented from, each once (empty: the same, or unknown); a 4D file
        read through another modality table is named with that reason."""
        if self.input_state(case, files) != CHANGED:
            return []
        recorded, refs = _aligned(self.cases[case]["inputs"], files)
        now = input_identity(refs)
        if len(now) != len(recorded):
            return self.input_paths(case)
        changed = []
        for i, (r, n) in enumerate(zip(recorded, now, strict=True)):
            if not _unchanged({**r, **{k: n.get(k) for k in _ROLE}}, n):
                changed.append(r["path"] if r["path"] == n["path"] else
                               f"{n['path']} (for channel {n.get('channel', i)}: not the contents recorded "
                               f"for it, {r['path']})")
            elif r.get("volume") != n.get("volume"):
                changed.append(f"{n['path']} (its volumes now feed other channels: its modality table changed)")
            elif r["path"] != n["path"]:
                changed.append(f"{r['path']} (now {n['path']}, the same contents)")
        return list(dict.fromkeys(changed)) or self.input_paths(case)

    def record(self, case: str, *, model: str | None, file: str, inputs: list[dict],
               probabilities: str | None = None, trained: bool | str = False, scheme: str | None = None,
               output: dict | None = None, probabilities_output: dict | None = None) -> None:
        """Record ``case`` as written now, and save the record (atomically). ``trained``: the case was one of the
        model's training cases (its run.json's split), so its Dice is not a held-out score. ``scheme``: the name of
        the label scheme its segmentation is numbered in (None: not known, nothing recorded). ``output``: the
        written file's identity (`input_identity` with its digest), by which `entry` knows it later; ``trained``
        may be `ID_ONLY` (`pipeline.model.held_out.trained_on`);
        ``probabilities_output`` the same of its probabilities (`probabilities_of`)."""
        self.cases[case] = {"model": model, "file": file, "inputs": inputs, "probabilities": probabilities}
        if output is not None:
            self.cases[case]["output"] = dict(output)
        if probabilities_output is not None:
            self.cases[case]["probabilities_output"] = dict(probabilities_output)
        if trained:
            self.cases[case]["trained"] = ID_ONLY if trained == ID_ONLY else True
        if scheme is not None:
            self.cases[case]["scheme"] = str(scheme)
        self.save()

    def schemes(self, cases: Iterable[str]) -> Mapping[str, list[str]]:
        """``{label scheme name: [cases]}`` of those of ``cases`` whose record names the numbering their segmentation
        was written in; a case without one (no record, or a record from before schemes were kept) is in none."""
        out: dict[str, list[str]] = {}
        for case in cases:
            scheme = self.entry(case).get("scheme")
            if scheme:
                out.setdefault(str(scheme), []).append(case)
        return out

    def trained_cases(self, cases: Iterable[str]) -> dict[str, bool | str]:
        """``{case: mark}`` of those of ``cases`` whose segmentation was written by a model that trained on them:
        True, or `ID_ONLY` (their id names a training case, their images are others; `id_only_note`)."""
        return {c: mark for c in cases if (mark := self.entry(c).get("trained"))}

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
