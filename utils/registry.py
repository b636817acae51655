"""A small name -> factory registry, shared by datasets, extractor families and heads."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Generic, List, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps names to factories. ``register`` is a decorator; ``create`` builds by name.

    >>> heads = Registry("head")
    >>> @heads.register("mlp")
    ... def make_mlp(**kw): ...
    >>> heads.names()
    ['mlp']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: Dict[str, Callable[..., T]] = {}
        self._info: Dict[str, Dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            self._info[name] = dict(info)
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def info(self, name: str) -> Dict[str, Any]:
        self.get(name)
        return dict(self._info[name])

    def names(self) -> List[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def _unknown_message(self, name: str) -> str:
        valid = self.names()
        close = difflib.get_close_matches(name, valid, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid {self.kind} names: {', '.join(valid) or '(none)'}"
