"""What every method's typed config shares: fields left ``None`` are filled from the scale preset,
then the profile, then derived from other fields; ``to_dict``/``from_dict`` round-trip through JSON
(checkpoint folders, run records); ``with_overrides`` re-derives what was filled unless overridden
(``--set image_size=128`` at CPU scale changes what depends on it).

A config is a frozen dataclass with a ``derived: frozenset`` bookkeeping field that inherits
:class:`ProfiledSettings` and calls :meth:`ProfiledSettings._fill` in its ``__post_init__``.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Callable, Mapping

from g2d_bench.errors import G2DBenchError


def choice(owner: str, name: str, value: Any, allowed: tuple) -> None:
    """A one-line error when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise G2DBenchError(f"{owner}.{name} = {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


class ProfiledSettings:
    """Mixin of the method configs (see the module docstring). ``LABEL`` names the method in errors."""

    LABEL = "method"

    def _fill(self, presets: tuple[Mapping[str, Any], ...], derived: Mapping[str, Callable[[], Any]] | None = None) -> None:
        """Set every ``None`` field from the first preset that has it (scale, then profile), then
        from ``derived`` (name → function of the filled config); remember which were filled."""
        filled = set(self.derived)
        for defaults in presets:
            for name, value in defaults.items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
                    filled.add(name)
        for name, make in (derived or {}).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, make())
                filled.add(name)
        object.__setattr__(self, "derived", frozenset(filled))

    def to_dict(self) -> dict[str, Any]:
        """Every setting, JSON-friendly (``derived`` is bookkeeping and left out; tuples as lists)."""
        data = asdict(self)
        data.pop("derived")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a (partial) dict; unknown keys are an error; list values of tuple fields
        (JSON) become tuples again."""
        data = dict(data)
        data.pop("derived", None)
        known = {f.name for f in fields(cls)} - {"derived"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise G2DBenchError(f"unknown {cls.LABEL} setting(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def with_overrides(self, overrides: Mapping[str, Any]):
        """A copy with overrides applied; settings filled from the scale, profile or other fields are
        filled again (from a changed scale or profile) unless overridden."""
        data = {k: v for k, v in self.to_dict().items() if k not in self.derived}
        data.update(overrides)
        return type(self).from_dict(data)
