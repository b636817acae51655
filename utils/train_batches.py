"""Deprecated (release 0.2): moved to :mod:`utils.train` (one training loop); this alias goes next release."""

from .deprecation import moved_module

__getattr__ = moved_module(__name__, "utils.train")
