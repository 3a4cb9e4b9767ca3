"""One registry entry per method (DESIGN.md "Method platform").

A method registers a :class:`MethodEntry` in ``g2d_bench.methods.METHODS``: the factory that builds
its :class:`~g2d_bench.adapter.MethodAdapter`, and, if it can be pretrained, its recipe
(:class:`g2d_bench.pretrain.Recipe`); optionally its own CLI subcommands (``g2d-bench g2d masks``)
and, for methods without a recipe, how contract tests build a tiny instance. Every reference is
lazy (``"package.module:attribute"``), so listing methods imports no torch.

The adapter factory has the signature ``build(checkpoint, *, arch, scale, home, progress) ->
MethodAdapter``. It only loads: "no checkpoint → pretrain the quick model once" is the runner's job
(:func:`g2d_bench.quick.quick_checkpoint`), driven by the recipe's quick budget, so building an
adapter never starts training by surprise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from g2d_bench.errors import G2DBenchError
from g2d_bench.registry import resolve_reference

if TYPE_CHECKING:
    import argparse

    from g2d_bench.adapter import MethodAdapter


class MethodCommands(Protocol):
    """CLI subcommands a method contributes (``g2d-bench <method> <command> ...``)."""

    help: str

    def add_arguments(self, parser: "argparse.ArgumentParser") -> None:
        """Add the method's subcommands (``parser.add_subparsers(dest=...)``) to its parser."""

    def run(self, args: "argparse.Namespace") -> int:
        """Run the parsed subcommand; returns the exit status."""


@dataclass(frozen=True)
class MethodEntry:
    """What the suite knows about one method. ``adapter``/``recipe``/``commands``/``example`` are
    lazy references ``"package.module:attribute"`` (or the objects themselves, e.g. in tests)."""

    name: str
    adapter: Any
    recipe: Any = None
    commands: Any = None
    #: ``example(folder: Path) -> dict`` of factory arguments that build a tiny instance (contract
    #: tests), for methods without a recipe (a recipe's ``tiny`` settings serve methods with one)
    example: Any = None
    help: str = ""

    @property
    def pretrainable(self) -> bool:
        return self.recipe is not None

    def get_recipe(self) -> Any:
        if self.recipe is None:
            raise G2DBenchError(f"method {self.name!r} cannot be pretrained (it has no recipe)")
        return _resolve(self.recipe)

    def get_commands(self) -> MethodCommands | None:
        return None if self.commands is None else _resolve(self.commands)

    def get_example(self) -> Any:
        if self.example is None:
            raise G2DBenchError(f"method {self.name!r} declares no example (methods without a recipe must)")
        return _resolve(self.example)

    def build_adapter(self, checkpoint: str | Path | None, **options: Any) -> "MethodAdapter":
        """The method's adapter from ``checkpoint`` (``None``: what the method builds without one)."""
        factory = _resolve(self.adapter)
        return factory(None if checkpoint is None else str(checkpoint), **options)


def _resolve(ref: Any) -> Any:
    return resolve_reference(ref) if isinstance(ref, str) else ref


def check_checkpoint_method(method: str, checkpoint: str | Path | None) -> None:
    """A checkpoint folder written by ``g2d-bench pretrain`` names its method: pointing another
    method at it is a clear error."""
    from g2d_bench.checkpoints import folder_method

    if checkpoint is None:
        return
    found = folder_method(checkpoint)
    if found is not None and found != method:
        raise G2DBenchError(f"{checkpoint} is a checkpoint of method {found!r}, not {method!r}; use --method {found} (or leave --method out)")


def method_for_checkpoint(checkpoint: str | Path | None) -> str | None:
    """The method a checkpoint folder names (``None`` for files and folders without config.json)."""
    from g2d_bench.checkpoints import folder_method

    return None if checkpoint is None else folder_method(checkpoint)
