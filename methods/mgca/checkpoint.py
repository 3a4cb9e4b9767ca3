"""MGCA checkpoints: our folder format and the released Lightning ``.ckpt`` (ResNet-50 variant),
loaded strictly and without executing pickled code.

Our format — the pretraining engine's folder (:mod:`g2d_bench.checkpoints`)::

    weights.safetensors   every tensor of MGCA.state_dict() (the official key names)
    config.json           {"method": "mgca", "format": 1, "config": MGCAConfig.to_dict(), ...}
    text/                 the text model's config.json and tokenizer (reloads without hub access)

The released checkpoint (README "Pre-trained models"; a Lightning ``.ckpt`` of
``mgca/models/mgca/mgca_module.py``'s ``MGCA``) holds in ``state_dict``:

- ``img_encoder_q.model.*``: torchvision ResNet-50 (``fc`` = Identity, so no ``fc.*``);
  ``img_encoder_q.global_embed.head.{0,1,3,4}.*`` (Linear 2048→2048, BN, Linear 2048→128,
  BN(affine=False)); ``img_encoder_q.local_embed.head.{0,1,3,4}.*`` (Conv1d 1024→2048, BN, Conv1d
  2048→128, BN(affine=False));
- ``text_encoder_q.model.*``: BLIP's ``med.BertModel`` with bert_config.json (6 layers, hidden 768,
  vocab 28996, no pooler, no token-type embedding, cross-attention layers that the text mode never
  runs), ``text_encoder_q.{global,local}_embed.head.*`` (768 in);
- ``patch_local_atten_layer.*``, ``word_local_atten_layer.*``: ``nn.MultiheadAttention`` layers
  unused with ``use_local_atten=False`` (the default);
- ``prototype_layer.weight`` (500×128).

Key map (:func:`official_to_ours`): the unused keys (:data:`UNUSED_OFFICIAL`) are dropped, and
``text_encoder_q.model.embeddings.token_type_embeddings.weight`` is added as zeros (med.py's
embeddings have no token-type term; HF's BERT adds row 0, which is then 0). Everything else must
match exactly: a missing or unexpected key is a one-line error listing them.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from g2d_bench.checkpoints import WEIGHTS_FILE, few, load_strict, read_folder, read_weights, uninitialised, write_folder
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.common.text import BIO_CLINICAL_BERT
from g2d_bench.methods.mgca.config import MGCAConfig

if TYPE_CHECKING:
    from g2d_bench.methods.mgca.model import MGCA, ImageEncoder

TEXT_DIR = "text"  # the recipe's extra: text-model config + tokenizer
#: keys of the released checkpoint that no MGCA computation uses (dropped before the strict check):
#: the optional attention layers (use_local_atten=False), med.py's cross-attention (mode="text")
#: and its position-id buffer
UNUSED_OFFICIAL = ("patch_local_atten_layer.", "word_local_atten_layer.")
UNUSED_OFFICIAL_PARTS = (".crossattention.",)
UNUSED_OFFICIAL_KEYS = ("text_encoder_q.model.embeddings.position_ids",)
TOKEN_TYPE_KEY = "text_encoder_q.model.embeddings.token_type_embeddings.weight"
OFFICIAL_PREFIXES = ("img_encoder_q.", "text_encoder_q.", "prototype_layer.")


# -- our format -----------------------------------------------------------------------------------
def save_mgca(model: "MGCA", directory: str | os.PathLike) -> Path:
    """Write ``model`` as a checkpoint folder (the engine's layout)."""
    from g2d_bench.methods.common.text import save_text

    return write_folder(directory, model.state_dict(), "mgca", model.cfg.to_dict(),
                        lambda folder: save_text(model.text_encoder_q.model, model.tokenizer, folder / TEXT_DIR))


def read_config(directory: str | os.PathLike) -> MGCAConfig:
    config, _ = read_folder(directory, "mgca")
    return MGCAConfig.from_dict(config)


def load_mgca(directory: str | os.PathLike) -> "MGCA":
    """The MGCA model saved in ``directory`` (offline: tokenizer and text config travel with it)."""
    from g2d_bench.methods.common.text import load_text_dir
    from g2d_bench.methods.mgca.model import MGCA, make_image_backbone

    directory = Path(directory)
    cfg = read_config(directory)
    text_model, tokenizer = load_text_dir(directory / TEXT_DIR, cfg.freeze_layers)
    resnet = uninitialised(lambda: make_image_backbone(replace(cfg, encoder_weights=None)))
    model = MGCA(cfg, resnet, text_model, tokenizer)
    load_strict(model, read_weights(directory), str(directory / WEIGHTS_FILE), "MGCA model")
    return model


# -- the released checkpoint -------------------------------------------------------------------------
def read_official(path: str | os.PathLike) -> dict:
    """The ``state_dict`` of a released MGCA ``.ckpt`` (:func:`g2d_bench.methods.common.lightning.read_lightning`:
    no pickled code runs), checked to be an MGCA one."""
    from g2d_bench.methods.common.lightning import read_lightning

    state = read_lightning(path).state_dict
    if not any(k.startswith("img_encoder_q.model.") for k in state):
        raise G2DBenchError(f"{path} is not an MGCA checkpoint (no img_encoder_q.model.* keys; first keys: {few(list(state), 3)})")
    return state


def _drop_unused(state: dict) -> dict:
    return {k: v for k, v in state.items()
            if not k.startswith(UNUSED_OFFICIAL) and not any(p in k for p in UNUSED_OFFICIAL_PARTS) and k not in UNUSED_OFFICIAL_KEYS}


def official_to_ours(state: dict) -> dict:
    """The released state dict in our model's keys (module docstring)."""
    import torch

    ours = _drop_unused(state)
    words = ours.get("text_encoder_q.model.embeddings.word_embeddings.weight")
    if words is not None and TOKEN_TYPE_KEY not in ours:
        ours[TOKEN_TYPE_KEY] = torch.zeros(2, words.shape[1], dtype=words.dtype)  # bert_config.json type_vocab_size 2
    return ours


def config_for_official(state: dict, text_model: str | None) -> MGCAConfig:
    """The official profile at paper scale with the sizes the weights prove: ResNet depth, embedding
    and head widths, prototypes, text layers."""
    from g2d_bench.methods.common.resnet import arch_of_state_dict

    image = {k.removeprefix("img_encoder_q.model."): v for k, v in state.items() if k.startswith("img_encoder_q.model.")}
    head = state.get("img_encoder_q.global_embed.head.3.weight")
    first = state.get("img_encoder_q.global_embed.head.0.weight")
    if head is None or first is None:
        raise G2DBenchError(f"MGCA checkpoint lacks img_encoder_q.global_embed.head.* (first keys: {few(list(state), 3)})")
    layers = {int(k.split(".")[4]) for k in state if k.startswith("text_encoder_q.model.encoder.layer.")}
    prototypes = state.get("prototype_layer.weight")
    return MGCAConfig(profile="official", scale="paper", arch=arch_of_state_dict(image), emb_dim=int(head.shape[0]),
                      hidden_dim=int(first.shape[0]), text_model=text_model or BIO_CLINICAL_BERT,
                      num_prototypes=int(prototypes.shape[0]) if prototypes is not None else 500,
                      text_layers=len(layers) if layers else 0)


def official_text_model(text_model: str, layers: int):
    """(BERT without pooler, tokenizer) from a local Bio_ClinicalBERT folder (config + tokenizer
    only; the weights come from the checkpoint), with the checkpoint's number of layers."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    from g2d_bench.methods.common.text import resolve_text_model

    where = resolve_text_model(text_model)
    try:
        config = AutoConfig.from_pretrained(where)
        tokenizer = AutoTokenizer.from_pretrained(where)
    except OSError as exc:
        raise G2DBenchError(f"cannot read the text config/tokenizer from {where}: {str(exc).splitlines()[0]}") from exc
    if layers:
        config.num_hidden_layers = layers
    # built normally (not ``uninitialised``): HF's embeddings keep non-persistent position/token-type buffers
    return BertModel(config, add_pooling_layer=False), tokenizer


def model_from_official(state: dict, text_model: str, source: str) -> "MGCA":
    """A full MGCA model from a released state dict and a local Bio_ClinicalBERT folder."""
    from g2d_bench.methods.mgca.model import MGCA, make_image_backbone

    cfg = config_for_official(state, text_model)
    bert, tokenizer = official_text_model(text_model, cfg.text_layers)
    resnet = uninitialised(lambda: make_image_backbone(cfg))
    model = MGCA(cfg, resnet, bert, tokenizer)
    load_strict(model, official_to_ours(state), source, "MGCA model")
    return model


def load_official(path: str | os.PathLike, text_model: str) -> "MGCA":
    """A full MGCA model from a released ``.ckpt`` (``text_model``: local Bio_ClinicalBERT folder)."""
    return model_from_official(read_official(path), text_model, str(path))


def image_encoder_from_official(state: dict, source: str) -> tuple["ImageEncoder", MGCAConfig]:
    """The image side only (``img_encoder_q.*``, strictly); the other keys must be MGCA's text side,
    prototypes or the known unused ones."""
    from g2d_bench.methods.mgca.model import ImageEncoder, make_image_backbone

    cfg = config_for_official(state, None)
    stray = [k for k in _drop_unused(state) if not k.startswith(OFFICIAL_PREFIXES)]
    if stray:
        raise G2DBenchError(f"{source}: keys that are not MGCA's (unexpected: {few(stray)}); is it an MGCA checkpoint?")
    encoder = uninitialised(lambda: ImageEncoder(make_image_backbone(cfg), cfg.emb_dim, cfg.hidden_dim, cfg.encoder_input_size))
    image = {k.removeprefix("img_encoder_q."): v for k, v in state.items() if k.startswith("img_encoder_q.")}
    load_strict(encoder, image, source, "MGCA image encoder")
    return encoder, cfg
