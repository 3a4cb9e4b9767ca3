"""G2D checkpoints: our own folder format and the official repository's layouts, loaded strictly.

Our format — the pretraining engine's checkpoint folder (g2d_bench.pretrain) — written by the
engine or by :func:`save_g2d`::

    weights.safetensors   every tensor of G2D.state_dict() (official key names)
    config.json           {"method": "g2d", "format": 1, "config": G2DConfig.to_dict(), ...}
    text/                 the text model's config.json and tokenizer (reloads without hub access)

Official layouts (REFERENCE.md; official trainer.py ``save_checkpoints``):

- ``*_checkpoint.pth``: ``{'epoch', 'model_state_dict', 'optimizer_state_dict'}`` with keys
  ``img_model.*`` (smp Unet), ``attnpool.*``, ``lm_model.*``, ``proj_v.*``, ``proj_t.*`` and the
  unused ``pseudo_conv.*`` (a Conv2d(1024, 128) defined in cnn_ae.py but never called; dropped);
- ``*_encoder.pth``: a bare torchvision ResNet state dict (no ``fc``);
- ``*_encoder_decoder.pth``: the smp Unet state dict (``encoder.*``, ``decoder.*``, ``segmentation_head.*``).

Every load is strict: missing or unexpected keys and shape mismatches raise a :class:`G2DBenchError`
naming a few, and weights are never loaded into an architecture they were not trained for.
All files are read with ``weights_only=True`` (or safetensors).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.g2d.config import G2DConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from g2d_bench.methods.g2d.model import G2D

FORMAT = 1  # g2d_bench.pretrain.CHECKPOINT_FORMAT
CONFIG_FILE, WEIGHTS_FILE, TEXT_DIR = "config.json", "weights.safetensors", "text"
#: keys of official checkpoints that no G2D computation uses (dropped before the strict check)
UNUSED_OFFICIAL = ("pseudo_conv.", "lm_model.embeddings.position_ids", "lm_model.embeddings.token_type_ids")


def _few(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n})" if len(keys) > n else "")


def load_strict(module: "nn.Module", state: dict, source: str) -> None:
    """``module.load_state_dict(state)`` with a one-line :class:`G2DBenchError` for missing or
    unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise G2DBenchError(f"{source}: keys do not match the G2D model (missing: {_few(missing) or '-'}; "
                            f"unexpected: {_few(unexpected) or '-'}); is it a checkpoint of this architecture?")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise G2DBenchError(f"{source}: tensor shapes differ from the configured model ({_few(wrong, 2)}); "
                            "the checkpoint was trained with another architecture or settings")
    module.load_state_dict(state, strict=True)


def uninitialised(factory):
    """``factory()`` built without its random initialisation (on the meta device, then given empty
    CPU storage). Only for modules whose buffers are all persistent and that are loaded strictly
    right after (every tensor is then overwritten); saves seconds per ResNet-50."""
    import torch

    with torch.device("meta"):
        module = factory()
    return module.to_empty(device="cpu")


# -- our format -----------------------------------------------------------------------------------
def save_g2d(model: "G2D", directory: str | os.PathLike) -> Path:
    """Write ``model`` into a checkpoint folder (the engine's layout). Each file is written
    atomically and ``config.json`` last, so a folder with a config is complete; other files in the
    folder (an engine run's ``last.pt``) are left alone."""
    from safetensors.torch import save_file

    from g2d_bench.io import atomic_path, write_json
    from g2d_bench.methods.g2d.text import save_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    save_text(model.lm_model, model.tokenizer, directory / TEXT_DIR)
    write_json(directory / CONFIG_FILE, {"method": "g2d", "format": FORMAT, "config": model.cfg.to_dict()})
    return directory


def read_config(directory: str | os.PathLike) -> G2DConfig:
    """The :class:`G2DConfig` stored in a checkpoint folder."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise G2DBenchError(f"{directory} has no {CONFIG_FILE}; pass a folder written by save_g2d / g2d-bench pretrain")
    data = json.loads(path.read_text())
    if data.get("method", "g2d") != "g2d":
        raise G2DBenchError(f"{path} is a checkpoint of method {data['method']!r}, not g2d; use --method {data['method']}")
    if data.get("format") != FORMAT:
        raise G2DBenchError(f"{path}: checkpoint format {data.get('format')!r} is not {FORMAT}; re-export it with this version")
    return G2DConfig.from_dict(data["config"])


def load_g2d(directory: str | os.PathLike) -> "G2D":
    """Rebuild the G2D model saved in ``directory`` (offline: tokenizer and text config travel
    with it)."""
    from safetensors.torch import load_file

    from g2d_bench.methods.g2d.model import G2D, build_image_model
    from g2d_bench.methods.g2d.text import load_text_dir

    directory = Path(directory)
    cfg = read_config(directory)
    lm_model, tokenizer = load_text_dir(directory / TEXT_DIR, cfg.freeze_layers)
    img_model = uninitialised(lambda: build_image_model(replace(cfg, encoder_weights=None)))
    model = G2D(cfg, img_model, lm_model, tokenizer)
    load_strict(model, load_file(str(directory / WEIGHTS_FILE)), str(directory / WEIGHTS_FILE))
    return model


# -- official layouts -----------------------------------------------------------------------------
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


def official_layout(obj: dict) -> str:
    """``"checkpoint"`` (training checkpoint), ``"model"`` (its bare model_state_dict),
    ``"encoder_decoder"`` (smp Unet) or ``"encoder"`` (torchvision ResNet)."""
    if "model_state_dict" in obj:
        return "checkpoint"
    keys = [k.removeprefix("module.") for k in obj]
    if any(k.startswith("img_model.") for k in keys):
        return "model"
    if any(k.startswith("decoder.") for k in keys) and any(k.startswith("encoder.") for k in keys):
        return "encoder_decoder"
    if any(k.startswith(("conv1.", "layer1.")) for k in keys):
        return "encoder"
    raise G2DBenchError(f"unrecognised G2D checkpoint layout (first keys: {_few(list(obj), 3)})")


def official_model_state(obj: dict) -> dict:
    """The model state dict of an official training checkpoint, ``module.`` prefix and unused
    keys removed."""
    state = obj["model_state_dict"] if "model_state_dict" in obj else obj
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(UNUSED_OFFICIAL)}


def config_for_official(state: dict, text_model: str, cfg: G2DConfig | None = None) -> G2DConfig:
    """The official profile's config with the architecture the state dict proves (ResNet depth,
    positional grid → image size, decoder classes); a given ``cfg`` must agree with it."""
    from g2d_bench.methods.baselines import arch_of_state_dict

    enc = {k.removeprefix("img_model.encoder."): v for k, v in state.items() if k.startswith("img_model.encoder.")}
    arch = arch_of_state_dict(enc)
    rows = state["attnpool.positional_embedding"].shape[0] - 1 if "attnpool.positional_embedding" in state else 64
    grid = math.isqrt(rows)
    classes = state["img_model.segmentation_head.0.weight"].shape[0] if "img_model.segmentation_head.0.weight" in state else 1
    if cfg is None:
        cfg = G2DConfig(profile="official", arch=arch, image_size=32 * grid, text_model=text_model)
        if classes > 1:
            cfg = cfg.with_overrides({"heads": classes, "mask.aggregate": "none"})
    problems = [f"{name} {want} (checkpoint) vs {have} (config)"
                for name, want, have in (("arch", arch, cfg.arch), ("attention grid", grid, cfg.grid),
                                         ("decoder classes", classes, cfg.decoder_classes)) if want != have]
    if problems:
        raise G2DBenchError(f"official G2D checkpoint does not fit the config: {'; '.join(problems)}")
    return cfg


def load_official_checkpoint(path: str | os.PathLike, text_model: str, cfg: G2DConfig | None = None) -> "G2D":
    """A G2D model from an official ``*_checkpoint.pth`` (or its bare ``model_state_dict``).

    ``text_model``: a local folder with the text encoder the checkpoint was trained with (its
    config and tokenizer; e.g. Bio_ClinicalBERT). ``cfg``: defaults to the official profile
    (4 heads) with the architecture read from the weights.
    """
    return model_from_official(official_model_state(read_torch_file(path)), text_model, cfg, str(path))


def model_from_official(state: dict, text_model: str, cfg: G2DConfig | None, source: str) -> "G2D":
    """:func:`load_official_checkpoint` on an already read, cleaned state dict."""
    from g2d_bench.methods.g2d.model import G2D, build_image_model
    from g2d_bench.methods.g2d.text import load_text_dir, resolve_text_model

    cfg = config_for_official(state, text_model, cfg)
    lm_model, tokenizer = load_text_dir(resolve_text_model(text_model), cfg.freeze_layers)
    img_model = uninitialised(lambda: build_image_model(replace(cfg, encoder_weights=None)))
    model = G2D(cfg, img_model, lm_model, tokenizer)
    load_strict(model, state, source)
    return model


def load_official_unet(state: dict, source: str) -> tuple["nn.Module", str]:
    """An smp Unet from an official ``*_encoder_decoder.pth`` state dict: (unet, arch)."""
    import segmentation_models_pytorch as smp

    from g2d_bench.methods.baselines import arch_of_state_dict

    state = {k.removeprefix("module."): v for k, v in state.items()}
    arch = arch_of_state_dict({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")})
    head = state.get("segmentation_head.0.weight")
    unet = uninitialised(lambda: smp.Unet(arch, encoder_weights=None, classes=1 if head is None else head.shape[0]))
    load_strict(unet, state, source)
    return unet, arch
