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

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from g2d_bench.checkpoints import (  # noqa: F401 (read_torch_file, uninitialised: part of this module's API)
    WEIGHTS_FILE, few, load_strict, read_folder, read_torch_file, read_weights, uninitialised, write_folder)
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.g2d.config import G2DConfig

if TYPE_CHECKING:
    from torch import nn

    from g2d_bench.methods.g2d.model import G2D

TEXT_DIR = "text"  # the recipe's extra: text-model config + tokenizer
#: keys of official checkpoints that no G2D computation uses (dropped before the strict check)
UNUSED_OFFICIAL = ("pseudo_conv.", "lm_model.embeddings.position_ids", "lm_model.embeddings.token_type_ids")


# -- our format -----------------------------------------------------------------------------------
def save_g2d(model: "G2D", directory: str | os.PathLike) -> Path:
    """Write ``model`` into a checkpoint folder (the engine's layout,
    :func:`g2d_bench.checkpoints.write_folder`)."""
    from g2d_bench.methods.common.text import save_text

    return write_folder(directory, model.state_dict(), "g2d", model.cfg.to_dict(),
                        lambda folder: save_text(model.lm_model, model.tokenizer, folder / TEXT_DIR))


def read_config(directory: str | os.PathLike) -> G2DConfig:
    """The :class:`G2DConfig` stored in a checkpoint folder."""
    config, _ = read_folder(directory, "g2d")
    return G2DConfig.from_dict(config)


def load_g2d(directory: str | os.PathLike) -> "G2D":
    """Rebuild the G2D model saved in ``directory`` (offline: tokenizer and text config travel
    with it)."""
    from g2d_bench.methods.common.text import load_text_dir
    from g2d_bench.methods.g2d.model import G2D, build_image_model

    directory = Path(directory)
    cfg = read_config(directory)
    lm_model, tokenizer = load_text_dir(directory / TEXT_DIR, cfg.freeze_layers)
    img_model = uninitialised(lambda: build_image_model(replace(cfg, encoder_weights=None)))
    model = G2D(cfg, img_model, lm_model, tokenizer)
    load_strict(model, read_weights(directory), str(directory / WEIGHTS_FILE), "G2D model")
    return model


# -- official layouts -----------------------------------------------------------------------------
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
    raise G2DBenchError(f"unrecognised G2D checkpoint layout (first keys: {few(list(obj), 3)})")


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
    from g2d_bench.methods.common.resnet import arch_of_state_dict

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
    from g2d_bench.methods.common.text import load_text_dir, resolve_text_model

    cfg = config_for_official(state, text_model, cfg)
    lm_model, tokenizer = load_text_dir(resolve_text_model(text_model), cfg.freeze_layers)
    img_model = uninitialised(lambda: build_image_model(replace(cfg, encoder_weights=None)))
    model = G2D(cfg, img_model, lm_model, tokenizer)
    load_strict(model, state, source, "G2D model")
    return model


def load_official_unet(state: dict, source: str) -> tuple["nn.Module", str]:
    """An smp Unet from an official ``*_encoder_decoder.pth`` state dict: (unet, arch)."""
    import segmentation_models_pytorch as smp

    from g2d_bench.methods.common.resnet import arch_of_state_dict

    state = {k.removeprefix("module."): v for k, v in state.items()}
    arch = arch_of_state_dict({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")})
    head = state.get("segmentation_head.0.weight")
    unet = uninitialised(lambda: smp.Unet(arch, encoder_weights=None, classes=1 if head is None else head.shape[0]))
    load_strict(unet, state, source, "G2D U-Net")
    return unet, arch
