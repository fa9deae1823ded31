"""Config values as the bundle and the command line hand them over.

``python -m monai.bundle run ... --resume true`` passes ``"true"`` as a string, and ``bool("false")`` is True:
:func:`as_bool` reads a flag whichever way it came.
"""

from __future__ import annotations


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
    raise ValueError(f"{name} must be true or false, got {value!r}")
