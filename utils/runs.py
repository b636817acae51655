"""Deprecated (release 0.2): runs and grids moved to :mod:`utils.experiment.runs` (also exported by
``utils.experiment``); this alias goes next release."""

from .deprecation import moved_module

__getattr__ = moved_module(__name__, "utils.experiment.runs")
