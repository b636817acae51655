"""Deprecated (release 0.2): precision helpers moved to :mod:`utils.runtime`; this alias goes next release."""

from .deprecation import moved_module

__getattr__ = moved_module(__name__, "utils.runtime")
