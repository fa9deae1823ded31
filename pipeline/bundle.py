"""The order in which the bundle's config files are merged: the one place that builds the list.

MONAI merges ``--config_file`` lists left to right, a later file replacing the ids it defines::

    common -> stage -> fast -> network -> budget -> ensemble -> demo -> multi_gpu_train

`config_files` builds the list (the Makefile, the demo, the benchmarks and the tests use it), `command` the whole
``python -m monai.bundle run`` line; why this order: `bundle/docs/README.md`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.config import ALL_FOLDS, config_files_in_argv, overrides_in_argv
from pipeline.core.errors import VERB_ENV, UserError

logger = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parent.parent / "bundle" / "configs"
#: Run id -> its stage overlay.
STAGES: dict[str, str] = {"training": "train.yaml", "inference": "inference.yaml", "evaluate": "evaluate.yaml"}
#: Network name -> its overlay (None: common.yaml's UNet).
NETWORKS: dict[str, str | None] = {"unet": None, "segresnet": "networks/segresnet.yaml",
                                   "dynunet": "networks/dynunet.yaml"}
#: Variant -> its overlay.
VARIANTS: dict[str, str] = {"fast": "variants/fast.yaml", "budget": "variants/budget.yaml",
                            "ensemble": "variants/ensemble.yaml", "demo": "variants/demo.yaml",
                            "multi_gpu": "variants/multi_gpu_train.yaml"}


def config_files(run_id: str, *, fast: bool = False, network: str = "unet", budget: bool = False,
                 ensemble: bool = False, demo: bool = False, multi_gpu: bool = False,
                 configs: str | Path = CONFIGS) -> list[str]:
    """The ``--config_file`` list for ``python -m monai.bundle run <run_id>``, in the module docstring's order.

    Raises:
        UserError: an unknown run id or network, or a variant that does not apply to the stage.
    """
    if run_id not in STAGES:
        raise UserError(f"unknown run id {run_id!r}; expected one of {', '.join(STAGES)}")
    if network not in NETWORKS:
        raise UserError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")
    if ensemble and run_id != "inference":
        raise UserError("ensemble.yaml applies to inference only (it averages the folds' models)")
    if multi_gpu and run_id != "training":
        raise UserError("multi_gpu_train.yaml applies to training only; inference runs in one process")
    names = ["common.yaml", STAGES[run_id]]
    if fast and run_id != "evaluate":
        names.append(VARIANTS["fast"])
    if NETWORKS[network] and run_id != "evaluate":
        names.append(NETWORKS[network])
    if budget and run_id != "evaluate":
        names.append(VARIANTS["budget"])
    if ensemble:
        names.append(VARIANTS["ensemble"])
    if demo and run_id != "evaluate":
        names.append(VARIANTS["demo"])
    if multi_gpu:
        names.append(VARIANTS["multi_gpu"])
    return [str(Path(configs) / n) for n in names]


def config_list(files: Sequence[str]) -> str:
    """The list as MONAI's CLI (fire) reads it: a Python list literal."""
    return repr([str(f) for f in files])


def command(run_id: str, overrides: dict | None = None, *, configs: str | Path = CONFIGS, quiet: bool = False,
            **variants: object) -> list[str]:
    """``[python, -m, monai.bundle, run, run_id, --config_file, [...], --meta_file, ..., --id, value, ...]``;
    with ``quiet``, ``-m pipeline.bundle`` instead: the same run with MONAI's harmless notices silenced
    (`pipeline.monai_workarounds.quiet`)."""
    files = config_files(run_id, configs=configs, **variants)  # type: ignore[arg-type]
    cmd = [sys.executable, "-m", "pipeline.bundle" if quiet else "monai.bundle", "run", run_id, "--config_file",
           config_list(files),
           "--meta_file", str(Path(configs) / "metadata.json"), "--logging_file", str(Path(configs) / "logging.conf")]
    for key, value in (overrides or {}).items():
        cmd += [f"--{key}", str(value)]
    return cmd


def common_ids(configs: str | Path = CONFIGS) -> set[str]:
    """The top-level ids of common.yaml (to tell a missing common.yaml from a genuinely undefined id)."""
    import yaml

    try:
        return set(yaml.safe_load((Path(configs) / "common.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError):
        return set()


def _config_ids(node: object, prefix: str = "") -> dict[str, object]:
    """``{id: value}`` of every id of a merged config (``a::b`` for ``b`` in ``a``; list items by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found: dict[str, object] = {}
    for key, value in items:
        name = f"{prefix}::{key}" if prefix else str(key)
        found[name] = value
        found.update(_config_ids(value, name))
    return found


#: What MONAI's ``run`` reads itself besides its signature (MONAI 1.6: ``create_workflow``'s and
#: ``ConfigWorkflow``'s arguments, and the settings of ``--tracking``), never an id of the configs.
MONAI_RUN_IDS = frozenset({"workflow_name", "workflow_type", "properties_path", "run_name", "experiment_name",
                           "tracking_uri", "is_not_rank0", "save_execute_config"})


def _arguments(target: object) -> tuple[set[str] | None, bool]:
    """The keyword arguments a config component's ``_target_`` names (a dotted name, or a MONAI short name such as
    ``CropForegroundd``), and whether it takes others too (``**kwargs``); ``(None, True)`` where that cannot be told
    (an expression, a reference, a name that does not import)."""
    import importlib
    import inspect

    if not isinstance(target, str) or target.startswith(("$", "@", "%")):
        return None, True
    try:
        if "." in target:
            module, _, name = target.rpartition(".")
        else:
            from monai.bundle.config_item import ComponentLocator

            module, name = ComponentLocator().get_component_module_name(target), target
            module = module[0] if isinstance(module, list) else module
        parameters = inspect.signature(getattr(importlib.import_module(str(module)), name)).parameters.values()
    except Exception:  # noqa: BLE001 - MONAI names what it cannot build
        return None, True
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return ({p.name for p in parameters if p.kind in kinds},
            any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters))


def unknown_cli_ids(argv: Sequence[str]) -> UserError | None:
    """The refusal of a ``monai.bundle run`` command line naming a run id, or giving an id, that its config files
    do not hold (``--learning_rat 0.01``: MONAI's CLI takes any id and nothing reads it, so the run silently
    trains with the default), or None. An argument added to a component (a key below an id with a ``_target_``:
    ``--train#optimizer#momentum 0.9`` with ``--train#optimizer#_target_ torch.optim.SGD``) is the component's to
    refuse, unless its class takes ``**kwargs`` and the key is a near miss of one it names (`_arguments`:
    ``crop_foreground#margn``, which CropForegroundd passes on to its padding unread); config files that cannot be
    read are MONAI's to name."""
    from pipeline.core.config import _is_flag, bundle_arguments, config_files_in_argv, overrides_in_argv

    words = [str(w) for w in argv]
    if not words or words[0] != "run":
        return None
    files = config_files_in_argv(words)
    try:
        import warnings

        from monai.bundle import ConfigParser

        with warnings.catch_warnings():  # MONAI's notices of the merge: its own run of these files shows them
            warnings.simplefilter("ignore")
            ids = _config_ids(ConfigParser.load_config_files(files)) if files else None
    except Exception:  # noqa: BLE001 - MONAI's own reader says what is wrong with the files
        ids = None
    if not ids:
        return None
    names = ", ".join(Path(f).name for f in files)
    if not any(Path(f).name == "common.yaml" for f in files):  # a stage alone: MONAI's failure gets its hint
        return None                                             # (`overlay_hint`: add common.yaml)
    run_id = words[1] if len(words) > 1 and not _is_flag(words[1]) else bundle_arguments(words).get("run_id")
    if run_id is not None and str(run_id) not in ids:
        stages = [k for k in ("training", "inference", "evaluate") if k in ids]
        return UserError(f"run {run_id}: {names} define no such run id (theirs: {', '.join(stages)}); check its "
                         "spelling")
    import difflib

    given = overrides_in_argv(words)
    for key in given:
        parent, _, last = key.rpartition("::")
        if key in MONAI_RUN_IDS or key.startswith("_meta_") or key in ids:
            continue
        shown = key.replace("::", "#")
        if parent in ids and isinstance(ids[parent], dict) and "_target_" in ids[parent]:  # a component's argument
            target = given.get(f"{parent}::_target_", ids[parent]["_target_"])
            named, open_ended = _arguments(target)
            if named is None or last in named or not open_ended:  # a class without **kwargs refuses it itself
                continue
            near = difflib.get_close_matches(last, sorted(named | set(ids[parent])), n=1, cutoff=0.8)
            if near:  # a near miss its **kwargs would take and pass on unread (CropForegroundd's to its padding)
                return UserError(f"--{shown}: {target} takes no argument {last!r} of its own and would pass it on "
                                 f"unread; did you mean --{parent.replace('::', '#')}#{near[0]}?")
            continue  # taken by its **kwargs (a DataLoader's pin_memory), not a misspelling
        close = difflib.get_close_matches(key, [k for k in ids if "::" not in k or "::" in key], n=1, cutoff=0.75)
        hint = f"did you mean --{close[0].replace('::', '#')}? " if close else ""
        return UserError(f"--{shown} is no id of {names}: MONAI's CLI would take it and nothing would read it, so "
                         f"the run would not be what was asked; {hint}check its spelling")
    return None


def overlay_alone(ref: str) -> str | None:
    """The fix when MONAI misses ``@ref`` because common.yaml is not in ``--config_file`` (a stage given alone)."""
    if ref not in common_ids():
        return None
    given = [os.path.basename(f) for f in config_files_in_argv(sys.argv)]
    if "common.yaml" in given:
        return None
    stage = next((s for s in given if s in STAGES.values()), "train.yaml")
    run_id = next(k for k, v in STAGES.items() if v == stage)
    files = [os.path.relpath(f) for f in config_files(run_id)]
    return (f"{stage} is an overlay on common.yaml (which defines @{ref}): pass --config_file "
            f"\"{config_list(files)}\"; python -m pipeline.bundle configs {run_id} [--fast] [--network N] [--demo] "
            "prints the list")


def overlay_hint(exc: BaseException) -> str | None:
    """The one line for MONAI's "the referring item `@x` is not defined" when a stage is given without common.yaml
    (registered with `pipeline.core.errors.register_hint` by `import pipeline`)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        missing = re.search(r"the referring item `@([^`#]+)[^`]*` is not defined in the config content", str(exc))
        if isinstance(exc, ValueError) and missing:
            return overlay_alone(missing.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def argument_hint(exc: BaseException) -> str | None:
    """The one line for a config component called with arguments it does not take (registered with
    `pipeline.core.errors.register_hint` by `import pipeline`): MONAI's "Failed to instantiate component ..." from a
    TypeError raised by the call itself, not inside the component (``--set train#loss#fn_weight 0.7`` under
    train.yaml, whose ``DiceLoss`` has no such argument; budget.yaml's ``DiceBCELoss`` has). A TypeError raised
    inside the component is a bug, and keeps its traceback."""
    import difflib
    import inspect

    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        built = re.search(r"Failed to instantiate component '([^']+)' with keywords: ([^\n]*)", str(exc))
        cause = exc.__cause__
        if built and isinstance(cause, TypeError):
            tb = cause.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is None or tb.tb_frame.f_code.co_name != "instantiate":
                return None  # raised inside the component: not its arguments
            target, keywords = built.group(1), built.group(2).strip()
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
            if unexpected:
                key = unexpected.group(1)
                try:
                    from pydoc import locate  # as MONAI's instantiate finds the component

                    takes = [n for n in inspect.signature(locate(target)).parameters if n not in ("self", "args",
                                                                                                   "kwargs")]
                except (TypeError, ValueError, ImportError):
                    takes = []
                close = difflib.get_close_matches(key, takes, n=1)
                return (f"the bundle config's {target} takes no argument {key!r} (a config file or a command-line "
                        f"id ...#{key} gives it one){f'; did you mean {close[0]!r}' if close else ''}: remove it, or "
                        f"use the configs whose component takes it")
            return (f"the bundle config's {target} cannot be built from the arguments it is given ({keywords}): "
                    f"{cause}; check the config files and command-line ids that give them")
        exc = exc.__cause__ or exc.__context__
    return None


def recorded_config(path: str, run_dir: str | os.PathLike) -> tuple[str, bool]:
    """A config file that ``run_dir``'s run.json names, found by its identity, its place under a bundle's
    ``configs/`` folder (``variants/budget.yaml``): the recorded path where it exists; else the same place in this
    install's ``bundle/configs/`` (a run trained in another clone or on another machine, or recorded as a relative
    path from another working folder; run.json's sha256 of each file lets `pipeline.model.recipe.check_recipe` warn
    when the content differs). A path recorded before the overlays moved into ``configs/variants/`` and
    ``configs/networks/`` (``configs/fast.yaml``) is looked for at the new place too. Returns the file and whether
    this install's stands in for it.

    Raises:
        UserError: neither exists (an overlay of the user's own, moved or removed): the run and the file named.
    """
    recorded = Path(path).expanduser()
    parts = recorded.parts
    if "configs" not in parts[:-1]:
        if recorded.is_file():
            return str(recorded), False
        here = ""
    else:
        tail = Path(*parts[len(parts) - parts[::-1].index("configs"):])
        moved = {Path(rel).name: rel for rel in [*VARIANTS.values(), *filter(None, NETWORKS.values())]}
        tails = [tail, *([Path(moved[tail.name])] if len(tail.parts) == 1 and tail.name in moved else [])]
        root = Path(*parts[:len(parts) - len(tail.parts)])
        for candidate in [recorded, *(root / t for t in tails)]:  # where the run read it
            if candidate.is_file():
                return str(candidate), False
        for candidate in (CONFIGS / t for t in tails):  # this install's, standing in
            if candidate.is_file():
                return str(candidate), True
        here = f", and this install has no bundle/configs/{tail.as_posix()}"
    raise UserError(f"{Path(run_dir) / 'run.json'} names the config file {path}, which the run trained with and "
                    f"which is not there{here}: put it back at that path, or run inference with your own list "
                    f"(python -m monai.bundle run inference --config_file \"[...]\" --run_dir {run_dir})")


#: The runs whose stand-in config files (`recorded_config`) have been reported, once a process.
_STOOD_IN: set[str] = set()


def inference_files(run_dir: str | os.PathLike, record: dict | None = None, *, ensemble: bool = False) -> list[str]:
    """The inference config list of a trained run: its recorded config files (`recorded_config`: found again where
    they moved) with ``train.yaml`` -> ``inference.yaml``, without the multi-GPU overlay; common + inference without
    a record. ``ensemble``: with ``ensemble.yaml`` in its place (before ``demo.yaml``), for a fold ensemble of such
    runs.

    Raises:
        UserError: a recorded config file is nowhere to be found (`recorded_config`).
    """
    if record is None:
        from pipeline.model.record import read_record  # here: the Makefile runs this module often, without torch

        record = read_record(run_dir) or {}
    files, stand_ins = [], []
    for f in record.get("config_files") or [str(CONFIGS / "common.yaml"), str(CONFIGS / "train.yaml")]:
        name = Path(f).name
        if name == "multi_gpu_train.yaml":
            continue
        wanted = str(Path(f).with_name("inference.yaml")) if name == "train.yaml" else f
        found, stood_in = recorded_config(wanted, run_dir)
        files.append(found)
        if stood_in:
            stand_ins.append(wanted)
    if stand_ins and str(run_dir) not in _STOOD_IN:
        _STOOD_IN.add(str(run_dir))
        logger.warning("%s names config files that are not there (%s): this install's %s stand in", Path(run_dir) /
                       "run.json", ", ".join(stand_ins), CONFIGS)
    if ensemble:
        at = next((i for i, f in enumerate(files) if Path(f).name == Path(VARIANTS["demo"]).name), len(files))
        files.insert(at, str(Path(files[0]).parent / VARIANTS["ensemble"]))
    return files


def inference_command(run_dir: str | os.PathLike, overrides: dict | None = None, *, quiet: bool = False,
                      record: dict | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The ``python -m monai.bundle run inference`` command of a trained run (`inference_files`), with
    ``--run_dir``, the run's preprocessing overrides (`pipeline.model.recipe.recorded_preprocessing`), then
    ``overrides`` and the words ``extra`` (``--id value ...``); an id given there replaces the run's (and the
    inference then refuses another value than the run's); ``quiet`` as in `command`."""
    from monai.bundle.reference_resolver import ReferenceResolver  # here: the Makefile runs this module without torch

    from pipeline.model.recipe import inference_overrides
    from pipeline.model.record import read_record

    record = (read_record(run_dir) or {}) if record is None else record
    files = inference_files(run_dir, record)
    cmd = [sys.executable, "-m", "pipeline.bundle" if quiet else "monai.bundle", "run", "inference",
           "--config_file", config_list(files), "--meta_file", str(CONFIGS / "metadata.json"),
           "--logging_file", str(CONFIGS / "logging.conf"), "--run_dir", str(run_dir)]
    given = {ReferenceResolver.normalize_id(str(k)): v for k, v in (overrides or {}).items()}
    later = set(overrides_in_argv(extra))
    for key, value in {**inference_overrides(record), **given}.items():
        if key not in later:
            cmd += [f"--{key}", str(value)]
    return cmd + [str(w) for w in extra]


def shell_word(word: str) -> str:
    """``word`` as one shell word: a config list (``['a.yaml', 'b.yaml']``, fire's literal) in double quotes, as the
    README writes it, where nothing in it is special there; anything else by `shlex.quote`."""
    if word.startswith("[") and not re.search(r'["$`\\!]', word):
        return f'"{word}"'
    return shlex.quote(word)


def python_path() -> str:
    """This install's interpreter as a user types it in a fresh shell: relative to the working folder when inside
    it (``.venv/bin/python``); ``python`` there may be another one, without MONAI."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


#: The data a ``--fold all`` run's next command names: every case of its own data trained it, none is held out.
NEW_CASES = "NEW_CASES"


def next_command(run_dir: str | os.PathLike, record: dict | None = None) -> str:
    """The inference command for a finished run: its config files with ``train.yaml`` -> ``inference.yaml`` (and
    without the multi-GPU overlay), ``--run_dir`` and its dataset (its validation fold; a ``--fold all`` run:
    `NEW_CASES`, to fill in); the network comes from ``run.json``. Under the verbs (`VERB_ENV`): ``python -m
    pipeline infer -i DATASET --run RUN``."""
    if record is None:
        from pipeline.model.record import read_record

        record = read_record(run_dir) or {}

    def q(value: object) -> str:  # a path with a space, a quote: one word in the shell the line is pasted into
        return shlex.quote(str(value))

    ids = record.get("ids", {})
    datalist = ids.get("datalist") or (str(Path(run_dir) / "datalist.json") if record.get("datalist_written") else None)
    every_case_trained = ids.get("fold") == ALL_FOLDS  # --fold all: no case of its data is new to the model
    from pipeline.data.labels import scheme_to_name

    split = record.get("split") or {}
    told = scheme_to_name([c for cases in split.values() for c in cases], ids.get("label_scheme"))
    if os.environ.get(VERB_ENV):
        data = NEW_CASES if every_case_trained else ids.get("dataset_dir") or datalist or "DATASET"
        scheme = f" --set label_scheme {shlex.quote(told)}" if told else ""  # cases whose names do not tell it
        return f"{python_path()} -m pipeline infer -i {q(data)} --run {q(run_dir)}{scheme}"
    configs = config_list(inference_files(run_dir, record))
    if every_case_trained:
        where = f"--dataset_dir {NEW_CASES}"
    elif datalist:
        where = f"--datalist {q(datalist)} --infer_fold {q(ids.get('fold', 0))}"
    else:
        where = f"--dataset_dir {q(ids.get('dataset_dir') or 'DATA')}"
    from pipeline.model.recipe import preprocessing_flags, recorded_preprocessing

    flags = preprocessing_flags(recorded_preprocessing(record))  # the run's own: inference refuses others
    if told:  # also with a datalist: one the user wrote need not record it
        flags = f"{flags} --label_scheme {shlex.quote(told)}".strip()
    return (f"{python_path()} -m monai.bundle run inference --config_file {shell_word(configs)} --run_dir {q(run_dir)} "
            f"{where}{' ' + flags if flags else ''}")


def print_next_command(run_dir: str | os.PathLike, record: dict | None) -> None:
    """Print ``next: <the inference command>`` of a finished training run (rank 0; train.yaml's ``finalize``)."""
    from pipeline.core.distributed import is_main_process  # here: the Makefile runs this module often, without torch

    if is_main_process():
        print(f"next: {next_command(run_dir, record)}", flush=True)


def run_quietly(argv: Sequence[str]) -> None:
    """``python -m pipeline.bundle run ...``: ``python -m monai.bundle run ...`` with MONAI's harmless notices
    silenced (`pipeline.monai_workarounds.quiet`; ``PIPELINE_VERBOSE=1`` keeps them)."""
    import runpy

    from pipeline import enter_bundle_cli
    from pipeline.monai_workarounds import quiet

    enter_bundle_cli(list(argv))  # as `import pipeline` does under MONAI's CLI; here pipeline is already imported
    quiet(verbose=bool(os.environ.get("PIPELINE_VERBOSE")))
    sys.argv = ["python -m monai.bundle", *argv]
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        run_quietly(argv)
        return 0
    parser = argparse.ArgumentParser(prog="python -m pipeline.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["configs", "flags", "run"], help="configs: print the --config_file list; "
                        "flags: with --run, the run's preprocessing overrides, which its inference must pass; run: "
                        "python -m monai.bundle run ... with MONAI's harmless notices silenced")
    parser.add_argument("run_id", choices=list(STAGES))
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--network", default="unet", choices=list(NETWORKS))
    parser.add_argument("--budget", action="store_true")
    parser.add_argument("--ensemble", action="store_true")
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--multi-gpu", dest="multi_gpu", action="store_true")
    parser.add_argument("--configs", default=str(CONFIGS), help="the bundle's configs folder")
    parser.add_argument("--run", help="inference: the list this trained run's run.json names (its recipe), not one "
                        "built from the flags")
    args = parser.parse_args(argv)
    try:
        if args.what == "flags" and not args.run:
            raise UserError("flags: pass --run RUN_DIR, the trained run whose preprocessing overrides to print")
        if args.run:
            if args.run_id != "inference":
                raise UserError("--run gives the inference list of a trained run: pass run_id inference")
            if args.what == "flags":
                from pipeline.model.recipe import preprocessing_flags, recorded_preprocessing
                from pipeline.model.record import read_record

                print(preprocessing_flags(recorded_preprocessing(read_record(args.run))))
                return 0
            print(config_list(inference_files(args.run, ensemble=args.ensemble)))
            return 0
        print(config_list(config_files(args.run_id, fast=args.fast, network=args.network, budget=args.budget,
                                       ensemble=args.ensemble, demo=args.demo, multi_gpu=args.multi_gpu,
                                       configs=args.configs)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
