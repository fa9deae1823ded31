"""Evaluation: metrics, our protocol and the official one, references and pairing, pictures, cross-validation."""

from pipeline.core.lazy import submodules

__getattr__ = submodules(__name__)
