"""One generic registry for methods, tasks and datasets.

Entries are either objects or lazy references ``"package.module:attribute"`` that are imported on
first use, so ``import g2d_bench`` and ``g2d-bench list`` stay fast. Registering a name twice is an
error; asking for an unknown name answers with the closest registered names.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

from g2d_bench.errors import G2DBenchError

T = TypeVar("T")


def resolve_reference(ref: str) -> object:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    if not attr:
        raise ValueError(f"lazy reference {ref!r} must look like 'package.module:attribute'")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Name → entry map with lazy entries and "did you mean" errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, entry: T | str, help: str = "") -> None:
        """Register ``entry`` (an object, or a lazy ``"module:attr"`` string) under ``name``."""
        if name in self._entries:
            raise G2DBenchError(f"{self.kind} {name!r} is already registered; pick another name")
        self._entries[name] = entry
        self._help[name] = help

    @contextlib.contextmanager
    def temporarily(self, name: str, entry: T | str, help: str = "") -> Iterator[None]:
        """Register ``entry`` for the duration of a ``with`` block, then remove it (tests: a test
        never leaks a registry entry into the next)."""
        self.register(name, entry, help)
        try:
            yield
        finally:
            del self._entries[name], self._help[name]

    def decorator(self, name: str, help: str = "") -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` form of :meth:`register`."""

        def wrap(obj: T) -> T:
            self.register(name, obj, help)
            return obj

        return wrap

    def get(self, name: str) -> T:
        """The entry for ``name``, importing it if it is lazy."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._entries))
            raise G2DBenchError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = resolve_reference(entry)  # type: ignore[assignment]
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def help(self, name: str) -> str:
        """The one-line description given at registration (empty if none)."""
        if name not in self._entries:
            self.get(name)  # raises the "did you mean" error
        return self._help[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
