"""Shared by every stage: user errors, files written whole, NIfTI reading, config values, processes, figures."""

from pipeline.core.lazy import submodules

__getattr__ = submodules(__name__)
