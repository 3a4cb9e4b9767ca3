"""Reading PyTorch Lightning ``.ckpt`` files without executing pickled code.

A Lightning checkpoint is a ``torch.save`` of a dict: ``state_dict`` (the LightningModule's
tensors), ``hyper_parameters`` (what ``save_hyperparameters()`` saw: often an ``argparse``
namespace, Lightning's ``AttributeDict`` or other custom classes), ``optimizer_states``,
``lr_schedulers``, ``callbacks``, ``epoch``, ``global_step``… The published ConVIRT, GLoRIA and
MGCA weights are such files.

:func:`read_lightning` first tries ``torch.load(weights_only=True)`` (torch's own restricted
unpickler). That refuses any class outside torch's allow-list, which the hyper-parameters usually
hold; the file is then read with :class:`RestrictedUnpickler`: it rebuilds tensors (storages are
read by torch's loader itself) and a short list of plain containers and torch value types, and turns
every other global the pickle names — a class *or* a function — into an inert :class:`Placeholder`
that only records its arguments and state. Nothing named by the file is imported or called, so a
checkpoint cannot run code on load; the hyper-parameters come back as placeholders (see
:func:`plain` to turn them into plain dicts for provenance).

Zip-format files are memory-mapped (``mmap=True``): optimiser states, which Lightning stores next
to the weights and which are twice their size for Adam, are never read into memory.
"""
from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g2d_bench.errors import G2DBenchError

log = logging.getLogger(__name__)

#: callables the restricted unpickler may really call: torch's tensor rebuilders and plain types
#: (each only builds a value from its arguments)
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),  # protocol-2 pickles of bytes: _codecs.encode(str, "latin1")
}


class Placeholder:
    """Stands in for an object of a class (or the result of a function) that the restricted loader
    does not rebuild. ``source`` names what the pickle asked for (``module.name``); ``args``,
    ``kwargs``, ``state``, ``items`` and ``mapping`` keep what the pickle gave it, inertly."""

    source = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:  # pickle BUILD
        self.state = state

    def append(self, item: Any) -> None:  # pickle APPEND(S) on list subclasses
        self.__dict__.setdefault("items", []).append(item)

    def extend(self, items: Any) -> None:
        self.__dict__.setdefault("items", []).extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:  # pickle SETITEM(S) on dict subclasses
        self.__dict__.setdefault("mapping", {})[key] = value

    def __repr__(self) -> str:
        return f"<placeholder for {self.source}>"


_PLACEHOLDERS: dict[str, type] = {}


def _placeholder(module: str, name: str) -> type:
    """One :class:`Placeholder` subclass per ``module.name`` (so a pickle's memo of it stays consistent)."""
    key = f"{module}.{name}"
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = type(name if name.isidentifier() else "Placeholder", (Placeholder,), {"source": key})
    return _PLACEHOLDERS[key]


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` returns real objects only for :data:`_ALLOWED` names and
    torch dtypes, and an inert :class:`Placeholder` subclass for every other name."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch":
            import torch

            value = getattr(torch, name, None)
            if isinstance(value, torch.dtype):
                return value
        return _placeholder(module, name)


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load`` (legacy format)."""

    __name__ = "g2d_bench_restricted_pickle"
    Unpickler = RestrictedUnpickler

    @staticmethod
    def load(file, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()


@dataclass
class LightningCheckpoint:
    """What :func:`read_lightning` found: the tensors of ``state_dict``, the hyper-parameters as
    plain data (:func:`plain`), the other top-level keys, and which reader was needed."""

    state_dict: dict
    hyper_parameters: Any = None
    keys: list[str] = field(default_factory=list)
    #: "weights_only" (torch's restricted unpickler sufficed) or "restricted" (:class:`RestrictedUnpickler`)
    loader: str = "weights_only"
    #: ``module.name`` of every global that became a placeholder
    placeholders: list[str] = field(default_factory=list)


def _torch_load(path: Path, **kwargs: Any) -> Any:
    """``torch.load`` on the CPU, memory-mapped when the file is a zip archive."""
    import zipfile

    import torch

    return torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path), **kwargs)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``): a zip with ``constants.pkl`` or ``code/`` entries.
    ``torch.load(weights_only=False)`` hands those to ``torch.jit.load``, which runs the archive's
    code, so they are refused before any loading."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def load_restricted(path: str | os.PathLike) -> Any:
    """The object in ``path`` read with :class:`RestrictedUnpickler` (no pickled code runs)."""
    path = Path(path)
    if _is_torchscript(path):
        raise G2DBenchError(f"{path} is a TorchScript archive, not a checkpoint of tensors; loading it would run its code")
    return _torch_load(path, weights_only=False, pickle_module=_RestrictedPickleModule)


def read_lightning(path: str | os.PathLike) -> LightningCheckpoint:
    """The tensors and hyper-parameters of a Lightning ``.ckpt`` (or any ``torch.save`` of a dict
    holding ``state_dict``, or of a bare state dict), read without executing pickled code."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise G2DBenchError(f"checkpoint {path} does not exist; pass the path of a local .ckpt file")
    loader = "weights_only"
    try:
        obj = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses the pickled hyper-parameters' classes: read the file again with the
        # placeholder unpickler
        loader = "restricted"
        try:
            obj = load_restricted(path)
        except Exception as exc:
            raise G2DBenchError(f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                                "is it a PyTorch (Lightning) checkpoint?") from exc
    except Exception as exc:
        raise G2DBenchError(f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                            "is it a PyTorch (Lightning) checkpoint?") from exc
    if not isinstance(obj, dict):
        raise G2DBenchError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict):
        raise G2DBenchError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict of tensors")
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise G2DBenchError(f"{path}: state_dict entries that are not tensors: {', '.join(map(str, bad[:4]))}"
                            f"{' …' if len(bad) > 4 else ''}; is it a Lightning checkpoint?")
    used = sorted(key for key, cls in _PLACEHOLDERS.items() if _uses(obj, cls)) if loader == "restricted" else []
    if used:
        log.info("%s: read without running pickled code; %s left as placeholders", path, ", ".join(used))
    return LightningCheckpoint(state_dict=dict(state), hyper_parameters=plain(obj.get("hyper_parameters")),
                               keys=sorted(map(str, obj)), loader=loader, placeholders=used)


def _uses(obj: Any, cls: type, depth: int = 0) -> bool:
    """Whether a placeholder of ``cls`` occurs in ``obj`` (a few levels deep; for the log)."""
    if isinstance(obj, cls):
        return True
    if depth > 6:
        return False
    if isinstance(obj, dict):
        return any(_uses(v, cls, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_uses(v, cls, depth + 1) for v in obj)
    if isinstance(obj, Placeholder):
        return any(_uses(v, cls, depth + 1) for v in obj.__dict__.values())
    return False


def plain(obj: Any, depth: int = 0) -> Any:
    """``obj`` with placeholders replaced by plain data, for provenance records: a placeholder with
    a dict state (a namespace, an attribute dict) or dict items becomes that dict, one with list
    items that list, any other one its ``module.name`` string; tensors become their shape."""
    import torch

    if depth > 20:
        return "…"
    if isinstance(obj, Placeholder):
        mapping = dict(obj.__dict__.get("mapping", {}))
        state = obj.__dict__.get("state")
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):  # (dict, slots)
            state = state[0]
        if isinstance(state, dict):
            mapping.update(state)
        if mapping:
            return {str(k): plain(v, depth + 1) for k, v in mapping.items()}
        if "items" in obj.__dict__:
            return [plain(v, depth + 1) for v in obj.__dict__["items"]]
        return obj.source
    if isinstance(obj, dict):
        return {str(k): plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in obj]
    if isinstance(obj, torch.Tensor):
        return f"tensor{tuple(obj.shape)}"
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)
