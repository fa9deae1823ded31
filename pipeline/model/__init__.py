"""The model: the run's record, the network it describes, its weights and its precision."""

from pipeline.core.lazy import submodules

__getattr__ = submodules(__name__)
