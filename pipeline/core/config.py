"""Config values as the bundle and the command line hand them over, read once where they are used.

`python -m monai.bundle run ... --resume true` passes the string "true" (and `bool("false")` is True); a number
given as a path arrives as an int. The readers here turn such values into what is meant, or refuse them with a
`UserError` that names the option."""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Mapping, Sequence

from pipeline.core.errors import UserError


def as_bool(value: object, name: str = "flag") -> bool:
    """A config flag given as a bool or, from the command line, as ``true``/``false`` (``yes``/``no``, ``1``/``0``).

    ``--resume true`` reaches the bundle as the string ``"true"``, and ``bool("false")`` would be True.

    Raises:
        ValueError: ``value`` is none of these (the message names the flag ``name``).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0", "none", ""):
        return False
    raise UserError(f"--{name} must be true or false, got {value!r}")


def as_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """A whole-number option as the CLI hands it over (``3``, ``"3"``), at least ``minimum``.

    Raises:
        UserError: not a whole number (``--infer_fold abc``), or below ``minimum`` (``--epochs 0``), naming ``--name``.
    """
    if isinstance(value, bool):
        raise UserError(f"--{name} must be a whole number, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise UserError(f"--{name} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise UserError(f"--{name} must be at least {minimum}, got {number}")
    return number


def as_infer_fold(value: object) -> int | None:
    """``--infer_fold`` as the CLI hands it over: a fold number, or None for every case (None, empty or negative).

    Raises:
        UserError: not a whole number, naming ``--infer_fold``.
    """
    if value is None or value == "":
        return None
    number = as_int(value, "infer_fold")
    return number if number >= 0 else None


#: The training fold that holds nothing out: every labelled case trains (nnU-Net's ``fold all``).
ALL_FOLDS = "all"


def as_fold(value: object, name: str = "fold") -> int | str:
    """A training fold as the CLI hands it over: a fold number >= 0 (``0``, ``"3"``), or ``"all"`` (`ALL_FOLDS`).

    Raises:
        UserError: neither, naming ``--name``.
    """
    if isinstance(value, str) and value.strip().lower() == ALL_FOLDS:
        return ALL_FOLDS
    try:
        return as_int(value, name, minimum=0)
    except UserError:
        raise UserError(f"--{name} must be a fold number (0, 1, ...) or {ALL_FOLDS} (every case trains, none "
                        f"validates), got {value!r}") from None


def as_folds(value: object, name: str) -> list[int]:
    """A list of fold numbers as the CLI hands it over (``[0, 1]``, ``"[0,1]"``, ``"0,1"``, one number ``2``):
    each >= 0, at least one, none twice (a fold twice would count twice in an ensemble's mean).

    Raises:
        UserError: not fold numbers, none, or one given twice, naming ``--name``.
    """
    if isinstance(value, str):
        text = value.strip().removeprefix("[").removesuffix("]")
        items: list[object] = [part for part in text.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    folds = [as_int(item, name, minimum=0) for item in items]
    if not folds:
        raise UserError(f"--{name} lists no fold; give fold numbers such as [0,1,2]")
    twice = sorted({f for f in folds if folds.count(f) > 1})
    if twice:
        raise UserError(f"--{name} {folds}: fold(s) {twice} given twice; give each fold once")
    return folds


def _as_number(value: object, name: str, bound: str) -> float:
    """``value`` as a float (``0.1``, ``"2e-3"``; a bool is no number), else a `UserError` saying ``--name`` must be
    a number ``bound``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(str(value).strip())
    except ValueError:
        raise UserError(f"--{name} must be a number {bound}, got {value!r}") from None


def as_fraction(value: object, name: str, *, below_one: bool = False) -> float:
    """A share from 0 to 1 as the CLI hands it over (``0.1``, ``"0.1"``); ``below_one``: 1 excluded (a sliding
    window's overlap).

    Raises:
        UserError: not a number (``--min_tumour_fraction abc``) or outside 0-1, naming ``--name``.
    """
    bound = "from 0 to below 1" if below_one else "from 0 to 1"
    number = _as_number(value, name, bound)
    if not 0 <= number <= 1 or (below_one and number == 1):
        raise UserError(f"--{name} must be a number {bound}, got {number:g}")
    return number


def as_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` as the CLI hands it over, spelled as they are (what is recorded is what is used).

    Raises:
        UserError: another value, naming ``--name`` and the choices.
    """
    text = str(value).strip()
    if text not in choices:
        raise UserError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
    return text


def as_positive(value: object, name: str, *, zero: bool = False) -> float:
    """A rate or weight as the CLI hands it over (``0.002``, ``"2e-3"``): a finite number above 0 (``zero``: or 0).

    Raises:
        UserError: not a number (``--learning_rate fast``), not finite, or too small (``-0.1``), naming ``--name``.
    """
    bound = "0 or more" if zero else "above 0"
    number = _as_number(value, name, bound)
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise UserError(f"--{name} must be a number {bound}, got {number:g}")
    return number


def as_path(value: object, name: str) -> str:
    """A path option as the CLI hands it over: ``--run_dir 20241204`` arrives as an int, and is the folder
    ``20241204``.

    Raises:
        UserError: an empty value or one that is no path (a list, a bool), naming ``--name``.
    """
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, os.PathLike)):
        raise UserError(f"--{name} must be a path, got {value!r}")
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if not text.strip():
        raise UserError(f"--{name} must be a path, got an empty value")
    return text


def differing(recorded: Mapping, current: Mapping) -> list[str]:
    """``"key: recorded -> current"`` for each key whose values differ (keys of either side)."""
    return [f"{k}: {recorded.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(recorded) | set(current))
            if recorded.get(k) != current.get(k)]


def config_files_in_argv(argv: Sequence[str]) -> list[str]:
    """The ``--config_file`` list of a ``python -m monai.bundle`` command line, as MONAI reads it
    (`bundle_arguments`: the last one given, or the ``--args_file``'s)."""
    value = bundle_arguments(argv).get("config_file")
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = value.split(",")
    return [str(p) for p in (value if isinstance(value, (list, tuple)) else [value])]

#: The named arguments of ``python -m monai.bundle run``: every other ``--name`` is a config override.
BUNDLE_RUN_ARGS = ("run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking",
                   "args_file")


def _is_flag(word: str) -> bool:
    """fire's ``_IsFlag``: ``--name``, or ``-name`` (a negative number is a value)."""
    return word.startswith("--") or re.match(r"^-[a-zA-Z]", word) is not None


def bundle_arguments(argv: Sequence[str]) -> dict[str, object]:
    """The keyword arguments of a ``python -m monai.bundle`` command line as MONAI's CLI reads them (fire 0.7's
    ``_ParseKeywordArgs`` and ``DefaultParseValue``, re-stated here since fire keeps them private):
    ``--name value``, ``--name=value`` or ``-name value``, leading dashes stripped and ``-`` in a name read as
    ``_``; a flag followed by another flag (or last) is True, or False for ``no<name>``, as ``<name>`` (fire's rule
    for a function taking ``**kwargs``); values parsed as fire parses them (``4`` an int, ``[2,2,2]`` a list,
    ``percentile`` a string); the last of a name given twice wins; nothing after the last lone ``--`` (fire's own
    flags); positional words are not read. Names in MONAI's normal form (``a#b`` is ``a::b``); a None dropped and an
    ``--args_file``'s values merged under the command line's, as MONAI's ``update_kwargs`` does."""
    from fire.parser import DefaultParseValue
    from monai.bundle.reference_resolver import ReferenceResolver  # here: pipeline.bundle imports this module bare

    words = [str(w) for w in argv]
    if "--" in words:
        words = words[:len(words) - 1 - words[::-1].index("--")]
    out: dict[str, object] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not _is_flag(word) or word == "--":
            continue
        key, eq, value = word.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if eq:
            parsed = DefaultParseValue(value)
        elif i < len(words) and not _is_flag(words[i]):
            parsed = DefaultParseValue(words[i])
            i += 1
        elif key.startswith("no") and key not in BUNDLE_RUN_ARGS:
            key, parsed = key[2:], False
        else:
            parsed = True
        out[ReferenceResolver.normalize_id(key)] = parsed
    out = {k: v for k, v in out.items() if v is not None}
    args_file = out.get("args_file")
    if isinstance(args_file, str) and os.path.isfile(args_file):
        from monai.bundle import ConfigParser

        given = ConfigParser.load_config_file(args_file)
        out = {**{ReferenceResolver.normalize_id(str(k)): v for k, v in dict(given).items()}, **out}
    return out


def overrides_in_argv(argv: Sequence[str]) -> dict[str, object]:
    """The config overrides of a ``python -m monai.bundle run`` command line (`bundle_arguments` without
    `BUNDLE_RUN_ARGS`): ``{id: value}``."""
    return {k: v for k, v in bundle_arguments(argv).items() if k not in BUNDLE_RUN_ARGS}


def cli_value(value: object) -> str:
    """``value`` as a command-line word that MONAI's CLI (fire) reads back as ``value``: a string as it is unless
    fire would read it as something else (``"5"``: quoted), anything else as Python writes it."""
    from fire.parser import DefaultParseValue

    text = value if isinstance(value, str) else repr(value)
    return text if DefaultParseValue(text) == value else repr(value)
