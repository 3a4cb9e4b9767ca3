"""Text towers shared by the VLP methods: a Hugging Face encoder (Bio_ClinicalBERT for real runs) or a
small scratch BERT.

The functions read a method config by duck typing (:class:`TextSettings`): every method's config
names these fields alike (``text_model``, ``text_max_length``, ``freeze_layers``, ``scratch_*``).

- ``text_model`` = a local folder or a hub id: ``transformers.AutoModel`` + ``AutoTokenizer``.
  Nothing is downloaded when ``HF_HUB_OFFLINE=1`` or the hub is unreachable: a hub id that is not
  already in the local Hugging Face cache fails at once with a :class:`G2DBenchError`.
- ``text_model = "scratch"``: a WordPiece vocabulary built from the report corpus with the
  ``tokenizers`` BERT normaliser and pre-tokeniser (:func:`train_wordpiece`), wrapped as a
  ``transformers.BertTokenizerFast``, and a ``BertModel`` built from a ``BertConfig`` (random
  weights), optionally pretrained with masked-language modelling on that corpus first
  (``scratch_mlm_steps``, :func:`mlm_pretrain`: the CPU analog of Bio_ClinicalBERT, which G2D starts
  from already pretrained on clinical notes). :func:`save_text` writes tokenizer + config so a
  checkpoint reloads offline (:func:`load_text_dir`).
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from g2d_bench.errors import G2DBenchError

if TYPE_CHECKING:
    from torch import nn

#: a text model name that builds a small BERT from a config and a WordPiece tokenizer trained on the
#: report corpus (SynthCXR / CPU runs; no hub access)
SCRATCH_TEXT = "scratch"
#: G2D §4.1 "ClinicalBERT", MGCA and GLoRIA configs: the clinical BERT every method starts from
BIO_CLINICAL_BERT = "emilyalsentzer/Bio_ClinicalBERT"


class TextSettings(Protocol):
    """The text-tower fields a method config carries (G2D, ConVIRT, GLoRIA and MGCA configs alike)."""

    text_model: str  # hub id, local folder, or SCRATCH_TEXT
    text_max_length: int
    freeze_layers: int
    scratch_layers: int
    scratch_hidden: int
    scratch_heads: int
    scratch_vocab: int
    scratch_mlm_steps: int

log = logging.getLogger(__name__)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_text_model(name: str) -> str:
    """A loadable location for ``name``: the local folder itself, the local HF-cache snapshot of a
    hub id, or (online only) the hub id. Fails fast offline instead of retrying for a minute."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise G2DBenchError(f"text model folder {name} does not exist; pass a local folder holding config.json and the tokenizer")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError) or not a valid repo id
        pass
    if _offline() or not _hub_reachable():
        why = "HF_HUB_OFFLINE=1" if _offline() else "huggingface.co is unreachable"
        raise G2DBenchError(
            f"text model {name!r} is not a local folder and {why}; pass a local folder "
            f"(e.g. a downloaded copy of {name}) as text_model, or text_model='scratch'"
        )
    return name


def load_pretrained_text(name: str) -> tuple["nn.Module", object]:
    """``(AutoModel, AutoTokenizer)`` from a local folder or a reachable hub id."""
    from transformers import AutoModel, AutoTokenizer

    where = resolve_text_model(name)
    log.info("text model %s from %s", name, where)
    try:
        return AutoModel.from_pretrained(where), AutoTokenizer.from_pretrained(where)
    except OSError as exc:
        raise G2DBenchError(f"cannot load text model from {where}: {str(exc).splitlines()[0]}") from exc


def train_wordpiece(corpus: Sequence[str], vocab_size: int, directory: str | Path):
    """A lower-casing BERT WordPiece vocabulary for ``corpus``, written as ``directory/vocab.txt``
    and returned as a ``transformers.BertTokenizerFast``.

    The ``tokenizers`` WordPiece trainer breaks merge-count ties non-deterministically (two runs on
    one corpus gave different vocabularies), so the vocabulary is chosen deterministically instead:
    the special tokens, every character in its word-initial and ``##`` forms, then whole words by
    frequency (ties alphabetical) up to ``vocab_size``. Normalisation, pre-tokenisation and the
    greedy longest-match encoding are the libraries' (BERT's), so unseen words fall back to pieces.
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in corpus:
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text or "")))
    if not counts:
        raise G2DBenchError("text_model='scratch' needs a non-empty report corpus to build its WordPiece vocabulary")
    chars = sorted({c for word in counts for c in word})
    vocab = SPECIAL_TOKENS + chars + ["##" + c for c in chars]
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    vocab += words[: max(0, vocab_size - len(vocab))]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    return BertTokenizerFast.from_pretrained(str(directory), do_lower_case=True)


def build_scratch_text(cfg: "TextSettings", corpus: Sequence[str]) -> tuple["nn.Module", object]:
    """A ``BertModel`` from a ``BertConfig`` (random weights) and a WordPiece tokenizer trained on
    ``corpus`` (sizes: ``cfg.scratch_*``; positions: ``cfg.text_max_length``)."""
    from transformers import BertConfig, BertModel

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_wordpiece(corpus, cfg.scratch_vocab, tmp)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.scratch_hidden,
        num_hidden_layers=cfg.scratch_layers,
        num_attention_heads=cfg.scratch_heads,
        intermediate_size=4 * cfg.scratch_hidden,  # BERT's ratio
        max_position_embeddings=cfg.text_max_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = BertModel(config)
    if cfg.scratch_mlm_steps:
        mlm_pretrain(model, tokenizer, corpus, cfg.scratch_mlm_steps, cfg.text_max_length)
    return model, tokenizer


#: masked-language-model pretraining of the scratch BERT (ours, CPU analog of ClinicalBERT's
#: pretraining): BERT's 15 % masking (Devlin et al. 2019; transformers' collator default), AdamW at
#: a constant 5e-4 (ours: a small model on a template corpus), batch 64
MLM_PROBABILITY = 0.15
MLM_LR = 5e-4
MLM_BATCH = 64


def mlm_pretrain(model: "nn.Module", tokenizer, corpus: Sequence[str], steps: int, max_length: int) -> list[float]:
    """Train ``model`` (a ``BertModel``) in place as the encoder of a ``BertForMaskedLM`` for
    ``steps`` batches drawn from ``corpus``; returns the MLM loss of every step. Uses the global torch
    RNG (batches, masking, dropout): seed it for a reproducible result."""
    import torch
    from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

    texts = [t for t in corpus if t]
    if not texts:
        raise G2DBenchError("scratch_mlm_steps needs a non-empty report corpus")
    mlm = BertForMaskedLM(model.config)
    missing, unexpected = mlm.bert.load_state_dict(model.state_dict(), strict=False)
    if missing or any(not k.startswith("pooler.") for k in unexpected):
        raise G2DBenchError(f"cannot pretrain {type(model).__name__} as a BertForMaskedLM encoder (keys {missing or unexpected})")
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt",
                        return_special_tokens_mask=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY, return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in mlm.parameters() if p.requires_grad], lr=MLM_LR)
    mlm.train()
    losses = []
    for _ in range(steps):
        pick = torch.randint(len(texts), (min(MLM_BATCH, len(texts)),))
        batch = collator([{k: encoded[k][i] for k in ("input_ids", "attention_mask", "special_tokens_mask")} for i in pick.tolist()])
        loss = mlm(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.load_state_dict(mlm.bert.state_dict(), strict=False)  # the pooler is unused (and frozen)
    log.info("scratch BERT: %d MLM steps, loss %.3f -> %.3f", steps, losses[0], sum(losses[-20:]) / len(losses[-20:]))
    return losses


def build_text_tower(cfg: "TextSettings", corpus: Sequence[str] | None) -> tuple["nn.Module", object]:
    """The text encoder and its tokenizer for ``cfg.text_model``, layers frozen per
    ``cfg.freeze_layers`` and the (unused) pooler frozen."""
    if cfg.text_model == SCRATCH_TEXT:
        if corpus is None:
            raise G2DBenchError("text_model='scratch' needs the report corpus (recipe.build(config, corpus=[...]))")
        model, tokenizer = build_scratch_text(cfg, corpus)
    else:
        model, tokenizer = load_pretrained_text(cfg.text_model)
    prepare_text_model(model, cfg.freeze_layers)
    return model, tokenizer


def prepare_text_model(model: "nn.Module", freeze_layers: int) -> None:
    """Freeze encoder layers ``0..freeze_layers-1`` (official main.py ``free_layers``) and the pooler,
    which no method here uses (G2D, ConVIRT and MGCA embed the [CLS] of ``last_hidden_state``, GLoRIA
    sums the last four layers), so every trainable parameter gets a gradient."""
    pooler = getattr(model, "pooler", None)
    if pooler is not None:
        pooler.requires_grad_(False)
    if freeze_layers == 0:
        return
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise G2DBenchError(f"cannot freeze layers of {type(model).__name__} (no encoder.layer); set freeze_layers=0")
    if freeze_layers > len(layers):
        raise G2DBenchError(f"freeze_layers={freeze_layers} but the text encoder has {len(layers)} layers; lower freeze_layers")
    for layer in layers[:freeze_layers]:
        layer.requires_grad_(False)


def save_text(model: "nn.Module", tokenizer, directory: str | Path) -> None:
    """Write the text model's config and the tokenizer (not the weights) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))


def load_text_dir(directory: str | Path, freeze_layers: int) -> tuple["nn.Module", object]:
    """Rebuild a text model (random weights, to be overwritten by a checkpoint) and its tokenizer
    from a folder written by :func:`save_text`; no network access."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise G2DBenchError(f"{directory} has no config.json; is it the text/ folder of a checkpoint written by g2d-bench pretrain?")
    model = AutoModel.from_config(AutoConfig.from_pretrained(str(directory)))
    prepare_text_model(model, freeze_layers)
    return model, AutoTokenizer.from_pretrained(str(directory))
