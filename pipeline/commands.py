"""The verbs of ``python -m pipeline``: ``train``, ``infer``, ``evaluate`` and ``compare`` on one's own data.

``train`` and ``infer`` build the bundle's config list through `pipeline.bundle`, print the equivalent
``python -m monai.bundle run ...`` line (the bundle stays the engine and the documented model-zoo path), run it
with MONAI's harmless notices silenced (`pipeline.monai_workarounds.quiet`), and end with a ``next:`` line that
works in a fresh shell (`python_command`: the interpreter of this install, by its path). Outputs go to folders
named after the dataset (`default_output`), so that two datasets never share one.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.bundle import VERB_ENV, command, inference_command, python_path, shell_word
from pipeline.core.errors import UserError
from pipeline.core.process import run_child
from pipeline.evaluation.crossval import CV_OPTIONS
from pipeline.model.record import read_record


def shown(path: str | os.PathLike) -> str:
    """``path`` as the user would type it here: relative to the working folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve())) if p.is_absolute() or p.exists() else str(p)
    except ValueError:
        return str(p)


def python_command() -> str:
    """The command that runs this install's Python in a fresh shell (`pipeline.bundle.python_path`)."""
    return python_path()


def display(cmd: Sequence[str]) -> str:
    """A command list as one shell line: this install's Python by `python_command`, paths shortened."""
    parts = [python_command() if i == 0 else shown(a) if os.path.isabs(a) and os.path.exists(a) else a
             for i, a in enumerate(cmd)]
    return " ".join(shell_word(p) for p in parts)


def run_stage(run_id: str, overrides: Mapping[str, object], *, verbose: bool = False, verb: str | None = "train",
              **variants: object) -> int:
    """Print the ``python -m monai.bundle run`` line of ``run_id``, then run it quietly (`pipeline.bundle.command`
    with ``quiet``); returns its exit status. ``verb``: the verb that runs it (`VERB_ENV`), so that the run's
    ``next:`` line names the verbs and a refusal names the verb's options (`verb_spelling`)."""
    print("$ " + display(command(run_id, dict(overrides), **variants)), flush=True)
    env = dict(os.environ)
    if verbose:
        env["PIPELINE_VERBOSE"] = "1"
    if verb:
        env[VERB_ENV] = verb
    return run_child(command(run_id, dict(overrides), quiet=True, **variants), env)


def dataset_name(path: str | os.PathLike) -> str:
    """A dataset's name for folder names: its folder's name (a datalist: its file's stem)."""
    p = Path(path).expanduser().resolve()
    return p.stem if p.is_file() else p.name


def default_output(run_dir: str | os.PathLike, dataset: str | os.PathLike, what: str = "seg") -> Path:
    """``<run_dir>/<what>_<dataset name>``: one folder per dataset (``runs/brats/seg_BraTS2021``)."""
    return Path(run_dir) / f"{what}_{dataset_name(dataset)}"


#: The bundle ids each verb sets from its own options (id -> the option): ``--set`` may not set them again.
TRAIN_OPTIONS = {"dataset_dir": "DATASET", "run_dir": "--run", "fold": "--fold", "time_budget_min": "--minutes",
                 "device": "--device", "resume": "--resume", "overwrite": "--overwrite"}
INFER_OPTIONS = {"dataset_dir": "-i/--input", "datalist": "-i/--input", "output_dir": "-o/--output",
                 "run_dir": "--run", "tta": "--tta/--no-tta", "device": "--device", "overwrite": "--overwrite"}


#: The verbs whose bundle runs name them (`pipeline.bundle.VERB_ENV`) and the ids each sets from its own options.
VERB_OPTIONS: dict[str, dict[str, str]] = {"train": TRAIN_OPTIONS, "infer": INFER_OPTIONS, "cv": {}}
#: Ids a verb sets itself, with no option of its own to change them (``--set`` refuses them too): id -> where the
#: verb sets it from (an option of the verb, or what it writes); a refusal's advice names that (`verb_spelling`).
VERB_FIXED: dict[str, dict[str, str]] = {"cv": CV_OPTIONS}
_FLAG_IDS = ("overwrite", "resume")  # options without a value under the verbs
_BUNDLE_ID = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*(?:(?:#|::)[a-z0-9_]+)*)( true| false)?")


def verb_spelling(line: str, verb: str) -> str:
    """A bundle refusal's advice (``--id value``, as MONAI's CLI takes it) as ``verb`` takes it: the verb's own
    option for an id it sets (``--run``, ``-i``, ``--overwrite``, ``--no-tta``), where it sets an id from that no
    option of its own changes (`VERB_FIXED`: cv's output folder), else ``--set id value``. A command quoted in the line
    (``python -m pipeline check DATA --label_scheme X``) is left as it is."""
    own = VERB_OPTIONS.get(verb)
    if own is None:
        return line
    fixed = VERB_FIXED.get(verb, {})
    # an id the verb sets itself: "--run_dir [VALUE]" -> where the verb sets it from (a value that is a path or a
    # number goes with it: the verb chooses it; a word after the option is the sentence's)
    fixed_id = re.compile(r"(?<![\w-])--(" + "|".join(map(re.escape, fixed)) +
                          r")(?![\w#:-])(?: (?=[\w.~/]*[/\d])[^\s,;()]+)?")

    def fixed_spelled(m: re.Match) -> str:
        where = fixed[m.group(1)]
        if where.startswith("-"):  # the verb's own option (marked, so that the next pass leaves it)
            return "\0" + where[2:] + m.group(0)[len("--" + m.group(1)):]
        return f"{m.group(1)} ({verb} sets it: {where})"

    # the advice to write elsewhere, where the verb writes one folder of its own: keep that folder's content instead
    elsewhere = re.compile(r"\b(?:[Pp]ass|[Cc]hoose) (?:another|a new) --output_dir(?: (?=[\w.~/]*[/\d])[^\s,;()]+)?"
                           r"(?: \((?:or another new folder|such as [^)]*)\))?|\b[Pp]ass --output_dir "
                           r"(?=[\w.~/]*[/\d])[^\s,;()]+(?: \((?:or another new folder|such as [^)]*)\))?")
    keep = (f"move {fixed['output_dir']} aside to keep it ({verb} writes there)"
            if not fixed.get("output_dir", "-").startswith("-") else None)

    def respelled(part: str) -> str:
        if keep:
            part = elsewhere.sub(lambda m: (keep[0].upper() if m.group(0)[0].isupper() else keep[0]) + keep[1:], part)
        return _BUNDLE_ID.sub(spelled, fixed_id.sub(fixed_spelled, part) if fixed else part)

    def spelled(m: re.Match) -> str:
        key, value = m.group(1), m.group(2) or ""
        option = own.get(key)
        if option is None:
            return f"--set {key}{value}"
        if key == "tta":
            return "--no-tta" if value.strip() == "false" else "--tta"
        if key in _FLAG_IDS:
            return option
        return option.split("/")[0] + value

    parts = re.split(r"(python -m pipeline [^);,]*)", line)
    line = "".join(part if i % 2 else respelled(part) for i, part in enumerate(parts)).replace("\0", "--")
    return re.sub(r"\b[Ss]et --set ", lambda m: ("P" if m.group(0)[0] == "S" else "p") + "ass --set ", line)


#: What every bundle command line carries (`pipeline.bundle.command`): no ``--set`` sets them.
BUNDLE_FILE_IDS = {"config_file": "the verb's own config list", "meta_file": "the bundle's metadata.json",
                   "logging_file": "the bundle's logging.conf"}


def set_ids(pairs: Sequence[str] | None, taken: Mapping[str, str] | None = None) -> dict[str, str]:
    """``--set ID VALUE [ID VALUE ...]`` (the option given once or repeated) as ``{ID: VALUE}``.

    Refused (`UserError`): an odd number of words, an id given twice (``a#b`` and ``a::b`` are one id, as MONAI
    reads them), or an id in ``taken`` (id -> the verb's option that sets it) or in `BUNDLE_FILE_IDS`, which would
    silently win over, or lose to, that option."""
    from monai.bundle.reference_resolver import ReferenceResolver

    pairs = list(pairs or [])
    taken = {**BUNDLE_FILE_IDS, **(taken or {})}
    if len(pairs) % 2:
        raise UserError(f"--set takes ID VALUE pairs, got {len(pairs)} word(s): {' '.join(pairs)}")
    taken = {ReferenceResolver.normalize_id(k): v for k, v in (taken or {}).items()}
    out: dict[str, str] = {}
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        norm = ReferenceResolver.normalize_id(key)
        if norm in taken:
            raise UserError(f"--set {key}: this command sets {norm} from {taken[norm]}; give it there, not in --set")
        if norm in out:
            raise UserError(f"--set {key} is given twice ({out[norm]} and {value}): give each id once")
        out[norm] = value
    return out


def train(dataset: str, run: str | None = None, *, minutes: float | None = None, network: str = "unet",
          plain: bool = False, fold: int | str = 0, device: str | None = None, resume: bool = False,
          overwrite: bool = False, sets: Sequence[str] | None = None, verbose: bool = False) -> int:
    """``python -m pipeline train DATASET``: train on every case of ``DATASET`` (fold ``fold`` validates; ``"all"``:
    none) into ``run`` (default ``runs/<dataset name>``); ``minutes``: the budget recipe (budget.yaml) for that long."""
    if not Path(dataset).expanduser().exists():
        raise UserError(f"no dataset at {dataset}: pass the folder of a BraTS download, the Decathlon's "
                        "Task01_BrainTumour or an nnU-Net raw dataset")
    run = run or str(Path("runs") / dataset_name(dataset))
    ids: dict[str, object] = {"dataset_dir": dataset, "run_dir": run, "fold": fold}
    if minutes is not None:
        ids["time_budget_min"] = minutes
    if device:
        ids["device"] = device
    if resume:
        ids["resume"] = True
    if overwrite:
        ids["overwrite"] = True
    ids.update(set_ids(sets, {k: TRAIN_OPTIONS[k] for k in ids}))
    return run_stage("training", ids, verbose=verbose, fast=not plain, network=network, budget=minutes is not None)


def infer(input_dir: str, output: str | None, run: str, *, tta: bool | None = None, device: str | None = None,
          overwrite: bool = False, sets: Sequence[str] | None = None, verbose: bool = False) -> int:
    """``python -m pipeline infer -i INPUT -o OUTPUT --run RUN``: segment every case of ``INPUT`` (a dataset
    folder, one case's folder, or a datalist) with the run's model; ``OUTPUT`` default ``<RUN>/seg_<INPUT name>``."""
    if read_record(run) is None and not (Path(run) / "models" / "model.pt").exists():
        raise UserError(f"{run} is not a trained run (no run.json, no models/model.pt): pass --run the run_dir of "
                        "python -m pipeline train")
    output = output or str(default_output(run, input_dir))
    where = ({"datalist": input_dir} if str(input_dir).endswith(".json") else {"dataset_dir": input_dir})
    ids: dict[str, object] = {**where, "output_dir": output}
    if tta is not None:
        ids["tta"] = tta
    if device:
        ids["device"] = device
    if overwrite:
        ids["overwrite"] = True
    ids.update(set_ids(sets, {k: INFER_OPTIONS[k] for k in [*ids, "run_dir"]}))  # run_dir: inference_command's
    cmd = inference_command(run, ids)
    print("$ " + display(cmd), flush=True)
    env = dict(os.environ, **({"PIPELINE_VERBOSE": "1"} if verbose else {}), **{VERB_ENV: "infer"})
    rc = run_child(inference_command(run, ids, quiet=True), env)
    if rc == 0:
        print(f"next: {python_command()} -m pipeline evaluate {shlex.quote(shown(output))} "
              f"{shlex.quote(shown(input_dir))}{evaluation_scheme_flag(output)}", flush=True)
    return rc


def evaluation_scheme_flag(pred_dir: str | os.PathLike) -> str:
    """`` --scheme S`` for the evaluation of ``pred_dir`` when its cases' names do not tell their numbering (BraTS-PED:
    ``auto`` is refused) and inference wrote them all in one scheme ``S`` (its provenance.json, the numbering the
    user named for these cases); else empty."""
    from pipeline.core.provenance import Provenance
    from pipeline.data.labels import scheme_to_name

    record = Provenance(pred_dir)
    cases = list(record.cases)
    schemes = record.schemes(cases)
    told = scheme_to_name(cases, next(iter(schemes))) if len(schemes) == 1 else None
    return f" --scheme {shlex.quote(told)}" if told else ""


def next_steps(train_dir: str = "TRAIN", test_dir: str = "TEST") -> list[str]:
    """The three commands that train on ``train_dir``, segment ``test_dir`` (other patients) and score them."""
    py, run = python_command(), f"runs/{dataset_name(train_dir)}"
    return [f"{py} -m pipeline train {train_dir} --minutes 45",
            f"{py} -m pipeline infer -i {test_dir} --run {run}",
            f"{py} -m pipeline evaluate {run}/seg_{dataset_name(test_dir)} {test_dir}"]


def default_evaluation(pred_dir: str | os.PathLike) -> Path:
    """Where an evaluation of ``pred_dir`` goes by default, beside it: ``seg_<dataset>`` -> ``eval_<dataset>``,
    ``seg`` -> ``eval`` (a run's), any other ``<name>`` -> ``<name>_eval``."""
    p = Path(os.path.abspath(os.path.expanduser(pred_dir)))  # "." or "seg/" name their folder
    if p.name.startswith("seg_"):
        return p.with_name("eval_" + p.name[4:])
    return p.with_name("eval" if p.name == "seg" else f"{p.name}_eval")
