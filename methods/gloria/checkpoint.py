"""GLoRIA checkpoints: our folder format and the published Lightning ``.ckpt``, loaded strictly.

Our format — the pretraining engine's checkpoint folder (:mod:`g2d_bench.checkpoints`)::

    weights.safetensors   every tensor of GLoRIA.state_dict() (the official names without "gloria.")
    config.json           {"method": "gloria", "format": 1, "config": GLoRIAConfig.to_dict(), ...}
    text/                 the text model's config.json and tokenizer (reloads without hub access)

Published weights (official ``gloria.py load_gloria``; e.g. ``chexpert_resnet50.ckpt``): a PyTorch
Lightning checkpoint whose ``state_dict`` holds the ``PretrainModel``'s tensors — ``gloria.img_encoder.model.*``
(torchvision ResNet-50 without ``fc``), ``gloria.img_encoder.global_embedder.{weight,bias}``
(768×2048, 768), ``gloria.img_encoder.local_embedder.weight`` (768×1024×1×1), ``gloria.text_encoder.model.*``
(Bio_ClinicalBERT: ``embeddings.*``, ``encoder.layer.{0-11}.*``, ``pooler.*``) — and pickled
hyper-parameters (an OmegaConf config). It is read without executing pickled code
(:func:`g2d_bench.methods.common.lightning.read_lightning`: ``weights_only=True``, else a restricted
unpickler that rebuilds only tensors). The text side needs a local folder with the BERT config and
tokenizer it was trained with (``text_model``, e.g. a copy of Bio_ClinicalBERT); without one only the
image side loads.

Every load is strict: missing or unexpected keys and shape mismatches raise a one-line
:class:`G2DBenchError` naming a few; the BERT ``embeddings.position_ids`` / ``token_type_ids`` buffers
that older transformers versions saved are dropped when the model has no such entry.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from g2d_bench.checkpoints import WEIGHTS_FILE, few, load_strict, read_folder, read_weights, uninitialised, write_folder
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.gloria.config import GLoRIAConfig

if TYPE_CHECKING:
    from g2d_bench.methods.gloria.model import GLoRIA, ImageEncoder

TEXT_DIR = "text"  # the recipe's extra: text-model config + tokenizer
#: prefix of the LightningModule attribute holding the model (official pretrain_model.py ``self.gloria``)
OFFICIAL_PREFIX = "gloria."
#: BERT buffers saved by older transformers versions, not parameters of the model (dropped)
OPTIONAL_BUFFERS = ("text_encoder.model.embeddings.position_ids", "text_encoder.model.embeddings.token_type_ids")


# -- our format -----------------------------------------------------------------------------------
def save_gloria(model: "GLoRIA", directory: str | os.PathLike) -> Path:
    """Write ``model`` as a checkpoint folder (the engine's layout)."""
    from g2d_bench.methods.common.text import save_text

    return write_folder(directory, model.state_dict(), "gloria", model.cfg.to_dict(),
                        lambda folder: save_text(model.text_encoder.model, model.tokenizer, folder / TEXT_DIR))


def read_config(directory: str | os.PathLike) -> GLoRIAConfig:
    """The :class:`GLoRIAConfig` stored in a checkpoint folder."""
    config, _ = read_folder(directory, "gloria")
    return GLoRIAConfig.from_dict(config)


def _assemble(cfg: GLoRIAConfig, text_dir: str | os.PathLike, state: dict, source: str) -> "GLoRIA":
    """A GLoRIA with the text config/tokenizer of ``text_dir`` and ``state`` loaded strictly."""
    from g2d_bench.methods.common.text import load_text_dir
    from g2d_bench.methods.gloria.model import GLoRIA, ImageEncoder

    text_model, tokenizer = load_text_dir(text_dir, cfg.freeze_layers)
    width = text_model.config.hidden_size
    encoder = uninitialised(lambda: ImageEncoder(cfg.arch, width))
    model = GLoRIA(cfg, encoder, text_model, tokenizer)
    load_strict(model, _drop_optional(state, model), source, "GLoRIA model")
    return model


def load_gloria(directory: str | os.PathLike) -> "GLoRIA":
    """Rebuild the GLoRIA model saved in ``directory`` (offline: tokenizer and text config travel with it)."""
    directory = Path(directory).expanduser()
    return _assemble(read_config(directory), directory / TEXT_DIR, read_weights(directory), str(directory / WEIGHTS_FILE))


# -- the published layout -------------------------------------------------------------------------
def official_state(path: str | os.PathLike) -> dict:
    """The model tensors of a published GLoRIA ``.ckpt`` with the ``gloria.`` prefix removed (a bare
    state dict without the prefix is taken as is); read without executing pickled code."""
    from g2d_bench.methods.common.lightning import read_lightning

    state = read_lightning(path).state_dict
    if any(k.startswith(OFFICIAL_PREFIX) for k in state):
        stray = [k for k in state if not k.startswith(OFFICIAL_PREFIX)]
        if stray:
            raise G2DBenchError(f"{path}: keys outside the GLoRIA model ({few(stray)}); is it a GLoRIA pretraining checkpoint?")
        state = {k.removeprefix(OFFICIAL_PREFIX): v for k, v in state.items()}
    if not any(k.startswith("img_encoder.model.") for k in state):
        raise G2DBenchError(f"{path} has no img_encoder.model.* tensors (first keys: {few(state, 3)}); "
                            "is it a GLoRIA checkpoint (keys gloria.img_encoder.*, gloria.text_encoder.*)?")
    return state


def _drop_optional(state: dict, model) -> dict:
    have = model.state_dict()
    return {k: v for k, v in state.items() if not (k in OPTIONAL_BUFFERS and k not in have)}


def config_for_official(state: dict, text_model: str | None = None) -> GLoRIAConfig:
    """The official profile at paper scale with the ResNet depth the weights prove."""
    from g2d_bench.methods.common.resnet import arch_of_state_dict

    arch = arch_of_state_dict({k.removeprefix("img_encoder.model."): v for k, v in state.items()
                               if k.startswith("img_encoder.model.")})
    return GLoRIAConfig(profile="official", scale="paper", arch=arch, **({"text_model": text_model} if text_model else {}))


def load_official_image(state: dict, source: str) -> tuple["ImageEncoder", GLoRIAConfig]:
    """The image tower (ResNet + embedders) of a published state dict, strictly: every
    ``img_encoder.*`` tensor must land; keys outside ``img_encoder.``/``text_encoder.`` are an error."""
    from g2d_bench.methods.gloria.model import ImageEncoder

    stray = [k for k in state if not k.startswith(("img_encoder.", "text_encoder."))]
    if stray:
        raise G2DBenchError(f"{source}: keys do not match the GLoRIA model (unexpected: {few(stray)}); is it a GLoRIA checkpoint?")
    from torch import nn

    cfg = config_for_official(state)
    image = {k: v for k, v in state.items() if k.startswith("img_encoder.")}
    width = image["img_encoder.global_embedder.weight"].shape[0] if "img_encoder.global_embedder.weight" in image else 768
    holder = nn.Module()  # keeps the img_encoder. prefix, so errors name the checkpoint's keys
    holder.img_encoder = uninitialised(lambda: ImageEncoder(cfg.arch, width))
    load_strict(holder, image, source, "GLoRIA image encoder")
    return holder.img_encoder, cfg


def load_official(path: str | os.PathLike, text_model: str) -> "GLoRIA":
    """The full GLoRIA model of a published ``.ckpt``. ``text_model``: a local folder with the BERT
    config and tokenizer it was trained with (e.g. a copy of Bio_ClinicalBERT)."""
    return model_from_official(official_state(path), text_model, str(path))


def model_from_official(state: dict, text_model: str, source: str) -> "GLoRIA":
    """:func:`load_official` on an already read state dict (prefix removed)."""
    from g2d_bench.methods.common.text import resolve_text_model

    return _assemble(config_for_official(state, text_model), resolve_text_model(text_model), state, source)
