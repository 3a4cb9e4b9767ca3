"""Checkpoint files: the folder format every pretrainable method shares, and strict, pickle-free loading.

The folder ``g2d-bench pretrain`` writes (one layout for every method)::

    weights.safetensors   every tensor of the model's state_dict()
    config.json           {"method": NAME, "format": 1, "config": {...method settings...}, "step": N}
    <extra>               whatever the recipe's ``save_extra`` adds (e.g. ``text/``: tokenizer + text config)
    last.pt               the engine's resume state (weights, optimiser, RNG; absent in exported folders)

``config.json`` is written last, so a folder with one is complete; its ``method`` field is how
``--checkpoint DIR`` finds the method (:func:`folder_method`). Every file is read without executing
pickled code: safetensors, or ``torch.load(weights_only=True)`` (:func:`read_torch_file`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from g2d_bench.errors import G2DBenchError

if TYPE_CHECKING:
    from torch import nn

FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"


def few(keys, n: int = 4) -> str:
    """``"a, b, c, d … (+5)"``: a short, sorted list of keys for one-line errors."""
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n})" if len(keys) > n else "")


def load_strict(module: "nn.Module", state: dict, source: str, what: str = "model") -> None:
    """``module.load_state_dict(state)`` with a one-line :class:`G2DBenchError` for missing or
    unexpected keys and shape mismatches (never a silent partial load)."""
    expected = module.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise G2DBenchError(f"{source}: keys do not match the {what} (missing: {few(missing) or '-'}; "
                            f"unexpected: {few(unexpected) or '-'}); is it a checkpoint of this architecture?")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise G2DBenchError(f"{source}: tensor shapes differ from the configured {what} ({few(wrong, 2)}); "
                            "the checkpoint was trained with another architecture or settings")
    module.load_state_dict(state, strict=True)


def uninitialised(factory: Callable[[], "nn.Module"]) -> "nn.Module":
    """``factory()`` built without its random initialisation (on the meta device, then given empty
    CPU storage). Only for modules whose buffers are all persistent and that are loaded strictly
    right after (every tensor is then overwritten); saves seconds per ResNet-50."""
    import torch

    with torch.device("meta"):
        module = factory()
    return module.to_empty(device="cpu")


def read_torch_file(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True)`` with a one-line error for unreadable files."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise G2DBenchError(f"checkpoint {path} does not exist; pass the path of a local file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise G2DBenchError(f"cannot read {path} with weights_only=True: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(obj, dict):
        raise G2DBenchError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


# -- the folder format ----------------------------------------------------------------------------------
def write_folder(directory: str | os.PathLike, state: dict, method: str, config: dict[str, Any],
                 extra: Callable[[Path], None] | None = None, **fields: Any) -> Path:
    """Write ``state`` (tensors) and ``config`` as a checkpoint folder of ``method``; ``extra(folder)``
    writes the recipe's own files; ``fields`` (e.g. ``step``) go into config.json. Each file is
    written atomically and config.json last; other files in the folder are left alone."""
    from safetensors.torch import save_file

    from g2d_bench.io import atomic_path, write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp))
    if extra is not None:
        extra(directory)
    write_json(directory / CONFIG_FILE, {"method": method, "format": FORMAT, "config": config, **fields})
    return directory


def folder_method(path: str | os.PathLike) -> str | None:
    """The method named by a checkpoint folder's config.json; ``None`` for a file or a folder without one."""
    path = Path(path).expanduser()
    config = path / CONFIG_FILE
    if not path.is_dir() or not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("method")
    except json.JSONDecodeError as exc:
        raise G2DBenchError(f"{config} is not valid JSON ({exc.msg}); the checkpoint folder is damaged") from exc


def read_folder(directory: str | os.PathLike, method: str) -> tuple[dict[str, Any], dict]:
    """(the stored method config dict, the full config.json) of a folder written for ``method``;
    a folder of another method is a clear error."""
    directory = Path(directory).expanduser()
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise G2DBenchError(f"{directory} has no {CONFIG_FILE}; pass a folder written by g2d-bench pretrain")
    data = json.loads(path.read_text())
    found = data.get("method")
    if found != method:
        raise G2DBenchError(f"{path} is a checkpoint of method {found!r}, not {method!r}; use --method {found}")
    if data.get("format") != FORMAT:
        raise G2DBenchError(f"{path}: checkpoint format {data.get('format')!r} is not {FORMAT}; re-export it with this version")
    return data["config"], data


def read_weights(directory: str | os.PathLike) -> dict:
    """The tensors of a folder's weights.safetensors."""
    from safetensors.torch import load_file

    path = Path(directory).expanduser() / WEIGHTS_FILE
    if not path.is_file():
        raise G2DBenchError(f"{path} is missing; the checkpoint folder is incomplete (rerun or resume g2d-bench pretrain)")
    return load_file(str(path))
