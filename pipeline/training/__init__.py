"""Training: the cached datasets, validation, checkpoints, monitoring and the fast path."""

from pipeline.core.lazy import submodules

__getattr__ = submodules(__name__)
