"""Inference: prediction and writing, the output folder's guard and provenance, ensembles, post-processing, viewer
tables."""

from pipeline.core.lazy import submodules

__getattr__ = submodules(__name__)
