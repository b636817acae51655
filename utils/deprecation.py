"""Old names that moved in the layout change (release 0.2) stay importable for one release, with a warning.

A module that lost names sets ``__getattr__ = moved(__name__, {"old_name": "new.module"})``; a module that
moved entirely becomes ``__getattr__ = moved_module(__name__, "new.module")``. The new module is imported
only when an old name is used (importlib, at attribute access), so the deprecated alias never makes the
package's layers point upward at import time.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Mapping


def moved(old_module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that resolves ``names`` (old name -> new module) with a DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        new = names[name]
        warnings.warn(f"{old_module}.{name} moved to {new}.{name}; the old name will be removed in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__


def moved_module(old_module: str, new_module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` forwarding every public name to ``new_module``, with a DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        warnings.warn(f"{old_module} moved to {new_module}; the old module will be removed in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new_module), name)

    return __getattr__
