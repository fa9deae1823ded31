"""The data: layouts and their cases, datalists, the data check, label schemes, synthetic cases, one DataSource
per stage."""

from pipeline.core.lazy import submodules

__getattr__ = submodules(__name__)
