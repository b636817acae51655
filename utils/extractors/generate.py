"""Deprecated (release 0.2): the generate-embeddings step moved to :mod:`utils.experiment.generate`;
this alias goes next release."""

from ..deprecation import moved_module

__getattr__ = moved_module(__name__, "utils.experiment.generate")
