"""ConVIRT checkpoints: our folder format and the MGCA repository's ConVIRT ``.ckpt``, loaded strictly.

Our format — the pretraining engine's folder (:mod:`g2d_bench.checkpoints`)::

    weights.safetensors   every tensor of ConVIRT.state_dict()
    config.json           {"method": "convirt", "format": 1, "config": ConVIRTConfig.to_dict(), ...}
    text/                 the text model's config.json and tokenizer (reloads without hub access)

The MGCA repository's ConVIRT (``mgca/models/convirt/convirt_module.py``, a LightningModule; the
released weights are its ``.ckpt``): ``state_dict`` holds

- ``img_encoder.model.*``: torchvision ResNet-50 (``fc`` replaced by Identity: no ``fc`` keys);
- ``img_encoder.global_embed.head.{0,1,3,4}.*``: Linear 2048→2048, BatchNorm1d(2048), Linear
  2048→128, BatchNorm1d(128, affine=False) (MGCA encoder.py ``GlobalEmbedding``);
- ``img_encoder.local_embed.head.*``: Conv1d 1024→2048→128 with BatchNorms (``LocalEmbedding``;
  built by MGCA's ``ImageEncoder`` but never used by ConVIRT: dropped);
- ``text_encoder.model.*``: MGCA's BLIP-style BERT (``mgca/backbones/med.py``) with
  ``configs/bert_config.json``: 6 layers, hidden 768, vocabulary 28,996, no pooler, **no
  token-type embedding** (filled with zeros here: BERT then adds nothing, as med.py), a persistent
  ``embeddings.position_ids`` buffer (dropped: rebuilt by transformers) and a
  ``crossattention.*`` block in every layer (``add_cross_attention: true``; unused in ConVIRT's
  ``mode="text"`` forward: dropped);
- ``text_encoder.global_embed.head.*``: 768→2048→128 (as the image head);
  ``text_encoder.local_embed.head.*`` (unused: dropped).

Everything else must match exactly: a missing or unexpected key is a one-line error listing them
(:func:`g2d_bench.checkpoints.load_strict`). Lightning files are read without executing pickled
code (:func:`g2d_bench.methods.common.lightning.read_lightning`). The tokenizer is not in the file:
it comes from ``text_model`` (a local Bio_ClinicalBERT folder) or the local Hugging Face cache;
without one the model loads whole but cannot encode text (the adapter then has no TEXT capability).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from g2d_bench.checkpoints import (
    WEIGHTS_FILE,
    few,
    load_strict,
    read_folder,
    read_weights,
    uninitialised,
    write_folder,
)
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.convirt.config import ConVIRTConfig

if TYPE_CHECKING:
    from g2d_bench.methods.convirt.model import ConVIRT

log = logging.getLogger(__name__)
TEXT_DIR = "text"  # the recipe's extra: text-model config + tokenizer
#: tensors of the MGCA ConVIRT module that ConVIRT never uses (dropped before the strict check)
UNUSED_MGCA = re.compile(r"^(img_encoder\.local_embed\.|text_encoder\.local_embed\.|"
                         r"text_encoder\.model\.encoder\.layer\.\d+\.crossattention\.|"
                         r"text_encoder\.model\.embeddings\.position_ids$)")
TOKEN_TYPES = "text_encoder.model.embeddings.token_type_embeddings.weight"
#: BERT's attention-head width (BERT-base: 768 / 12; MGCA bert_config.json num_attention_heads 12)
HEAD_WIDTH = 64


# -- our format -----------------------------------------------------------------------------------
def save_convirt(model: "ConVIRT", directory: str | os.PathLike) -> Path:
    """Write ``model`` into a checkpoint folder (the engine's layout)."""
    from g2d_bench.methods.common.text import save_text

    return write_folder(directory, model.state_dict(), "convirt", model.cfg.to_dict(),
                        lambda folder: save_text(model.text_encoder.model, model.tokenizer, folder / TEXT_DIR))


def read_config(directory: str | os.PathLike) -> ConVIRTConfig:
    """The :class:`ConVIRTConfig` stored in a checkpoint folder."""
    config, _ = read_folder(directory, "convirt")
    return ConVIRTConfig.from_dict(config)


def load_convirt(directory: str | os.PathLike) -> "ConVIRT":
    """Rebuild the ConVIRT model saved in ``directory`` (offline: tokenizer and text config travel
    with it)."""
    from dataclasses import replace

    from g2d_bench.methods.common.resnet import make_resnet
    from g2d_bench.methods.common.text import load_text_dir
    from g2d_bench.methods.convirt.model import ConVIRT

    directory = Path(directory).expanduser()
    cfg = read_config(directory)
    bert, tokenizer = load_text_dir(directory / TEXT_DIR, cfg.freeze_layers)
    net = uninitialised(lambda: make_resnet(cfg.arch))
    model = ConVIRT(replace(cfg, encoder_weights=None), net, bert, tokenizer)
    load_strict(model, read_weights(directory), str(directory / WEIGHTS_FILE), "ConVIRT model")
    return model


# -- the MGCA repository's layout ------------------------------------------------------------------
def layout_of(state: dict) -> str:
    """``"mgca"`` (the MGCA ConVIRT module's state dict) or ``"torchvision"`` (a bare ResNet)."""
    keys = list(state)
    if any(k.startswith("img_encoder.") for k in keys):
        return "mgca"
    if any(k.startswith(("conv1.", "layer1.")) for k in keys):
        return "torchvision"
    raise G2DBenchError(f"unrecognised ConVIRT checkpoint layout (first keys: {few(keys, 3)}); expected the MGCA "
                        "ConVIRT module's img_encoder.* / text_encoder.* keys or a torchvision ResNet state dict")


def mgca_model_state(state: dict) -> dict:
    """The MGCA ConVIRT state dict in this model's keys: unused tensors dropped (:data:`UNUSED_MGCA`)
    and, when the file has none, a zero token-type embedding added (med.py has none; zero adds nothing)."""
    import torch

    kept = {k: v for k, v in state.items() if not UNUSED_MGCA.match(k)}
    words = kept.get("text_encoder.model.embeddings.word_embeddings.weight")
    if words is not None and TOKEN_TYPES not in kept:
        kept[TOKEN_TYPES] = torch.zeros(2, words.shape[1], dtype=words.dtype)
    return kept


def bert_config_for(state: dict):
    """The ``transformers.BertConfig`` a text-tower state dict (``text_encoder.model.*`` keys) proves:
    vocabulary, width, depth, feed-forward width and positions from the tensor shapes; heads =
    width / 64 (BERT's convention; MGCA bert_config.json: 12 at 768)."""
    from transformers import BertConfig

    prefix = "text_encoder.model."
    try:
        words = state[prefix + "embeddings.word_embeddings.weight"]
        positions = state[prefix + "embeddings.position_embeddings.weight"]
        ffn = state[prefix + "encoder.layer.0.intermediate.dense.weight"]
    except KeyError as exc:
        raise G2DBenchError(f"the checkpoint has no text encoder tensor {exc.args[0]}; is it a ConVIRT checkpoint of the "
                            "MGCA repository?") from exc
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layer\.(\d+)\.", k)))
    hidden = int(words.shape[1])
    return BertConfig(vocab_size=int(words.shape[0]), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // HEAD_WIDTH), intermediate_size=int(ffn.shape[0]),
                      max_position_embeddings=int(positions.shape[0]), type_vocab_size=2, pad_token_id=0)


def config_for_mgca(state: dict, text_model: str | None = None) -> ConVIRTConfig:
    """The ``official`` profile at paper scale with what the (cleaned) state dict proves: ResNet
    depth, projection sizes, text depth, and whether it has a token-type embedding."""
    from g2d_bench.methods.common.resnet import arch_of_state_dict
    from g2d_bench.methods.common.text import BIO_CLINICAL_BERT

    image = {k.removeprefix("img_encoder.model."): v for k, v in state.items() if k.startswith("img_encoder.model.")}
    if not image:
        raise G2DBenchError("the checkpoint has no img_encoder.model.* tensors; is it the MGCA repository's ConVIRT?")
    head = "img_encoder.global_embed.head."
    if head + "0.weight" not in state or head + "3.weight" not in state:
        raise G2DBenchError(f"the checkpoint has no {head}0/3 weights (MGCA GlobalEmbedding); is it the MGCA repository's ConVIRT?")
    bert = bert_config_for(state)
    return ConVIRTConfig(profile="official", scale="paper", arch=arch_of_state_dict(image),
                         text_model=text_model or BIO_CLINICAL_BERT, proj_hidden=int(state[head + "0.weight"].shape[0]),
                         proj_dim=int(state[head + "3.weight"].shape[0]), text_layers=bert.num_hidden_layers,
                         token_types=TOKEN_TYPES in state and bool(state[TOKEN_TYPES].abs().sum() > 0))


def local_tokenizer(text_model: str | None):
    """The tokenizer of ``text_model`` (a local folder or a hub id already in the local Hugging Face
    cache), or of Bio_ClinicalBERT from that cache; ``None`` when there is none locally. Never
    downloads."""
    from transformers import AutoTokenizer

    from g2d_bench.methods.common.text import BIO_CLINICAL_BERT

    name = text_model or BIO_CLINICAL_BERT
    where = Path(name).expanduser()
    if not where.is_dir():
        if text_model and (where.is_absolute() or name.startswith((".", "~"))):
            raise G2DBenchError(f"text_model folder {name} does not exist; pass a local folder holding the tokenizer")
        try:
            from huggingface_hub import snapshot_download

            where = Path(snapshot_download(name, local_files_only=True))
        except Exception:  # not in the local cache
            if text_model:
                raise G2DBenchError(f"text model {name!r} is neither a local folder nor in the local Hugging Face cache; "
                                    "pass a local folder holding its tokenizer") from None
            return None
    try:
        return AutoTokenizer.from_pretrained(str(where))
    except (OSError, ValueError) as exc:
        raise G2DBenchError(f"cannot load a tokenizer from {where}: {str(exc).splitlines()[0]}") from exc


def model_from_mgca(state: dict, source: str, text_model: str | None = None) -> "ConVIRT":
    """A ConVIRT model from the MGCA ConVIRT module's state dict (strict; see the module docstring).
    ``text_model``: where the tokenizer comes from (default: Bio_ClinicalBERT from the local cache)."""
    from transformers import BertModel

    from g2d_bench.methods.common.resnet import make_resnet
    from g2d_bench.methods.convirt.model import ConVIRT

    state = mgca_model_state(state)
    cfg = config_for_mgca(state, text_model)
    tokenizer = local_tokenizer(text_model)
    vocab = bert_config_for(state).vocab_size
    if tokenizer is not None and len(tokenizer) != vocab:
        raise G2DBenchError(f"{source}: the text encoder has {vocab} word embeddings but the tokenizer of "
                            f"{text_model or 'Bio_ClinicalBERT'} has {len(tokenizer)} tokens; pass the tokenizer it was trained with")
    if tokenizer is None:
        log.warning("%s: no local Bio_ClinicalBERT tokenizer (pass text_model=FOLDER); the text side is loaded but "
                    "cannot encode text", source)
    model = ConVIRT(cfg, uninitialised(lambda: make_resnet(cfg.arch)), BertModel(bert_config_for(state)), tokenizer)
    load_strict(model, state, source, "ConVIRT model (MGCA layout)")
    return model


def load_mgca_checkpoint(path: str | os.PathLike, text_model: str | None = None) -> "ConVIRT":
    """A ConVIRT model from the MGCA repository's ConVIRT ``.ckpt`` (Lightning; read without
    executing pickled code) or a bare ``torch.save`` of its state dict."""
    from g2d_bench.methods.common.lightning import read_lightning

    checkpoint = read_lightning(path)
    return model_from_mgca(checkpoint.state_dict, str(path), text_model)
