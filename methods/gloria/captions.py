"""GLoRIA's text side before the model: reports → cleaned sentences → one sampled caption, and the
word slots the model sums word pieces into.

Sentence cleaning follows the official ``pretraining_dataset.py`` (``create_path_2_sent_mapping``)
and ``gloria_model.py`` (``process_text``): newlines become spaces; the text is split at numbered-list
markers (``[0-9]+\\.``) and then at every period; each piece is lower-cased and reduced to its
``\\w+`` runs (punctuation dropped), non-ASCII characters are removed; pieces with one run or none
are dropped ("no", "normal."). In training one sentence is drawn per report and step (official
config ``full_report: false``, ``get_caption``), here from torch's global generator, which the engine
seeds per sample (``Recipe.text_transform``).
"""
from __future__ import annotations

import re
from typing import Sequence

#: official pretraining_dataset.py: numbered-list markers split a report before the periods do
_NUMBERED = re.compile(r"[0-9]+\.")
#: official: nltk RegexpTokenizer(r"\w+") keeps runs of word characters
_WORD = re.compile(r"\w+")


def _clean_words(piece: str) -> list[str]:
    """Lower-cased ``\\w+`` runs of ``piece`` with non-ASCII characters removed (empty runs dropped)."""
    words = (w.encode("ascii", "ignore").decode("ascii") for w in _WORD.findall(piece.replace("\ufffd\ufffd", " ").lower()))
    return [w for w in words if w]


def report_sentences(report: str, stop_words: int = 0) -> list[str]:
    """The cleaned sentences of ``report`` (module docstring), in order. ``stop_words`` > 0 is the
    official quirk: stop once the running word count equals it exactly (``captions_per_image``, 5)."""
    pieces = [part for chunk in _NUMBERED.split((report or "").replace("\n", " ")) for part in chunk.split(".")]
    sentences, count = [], 0
    for piece in pieces:
        runs = _WORD.findall(piece.lower())
        if len(runs) <= 1:  # official: "if len(tokens) <= 1: continue"
            continue
        words = _clean_words(piece)
        if not words:  # ours: a sentence of non-ASCII runs only is skipped (official keeps "")
            continue
        sentences.append(" ".join(words))
        count += len(words)
        if stop_words and count == stop_words:
            break
    return sentences


def full_caption(report: str) -> str:
    """All cleaned sentences joined (official ``process_text``, used for prompts and ``caption="report"``);
    a text without a two-word sentence keeps its cleaned words (ours: official would leave it empty)."""
    sentences = report_sentences(report)
    return " ".join(sentences) if sentences else " ".join(_clean_words(report or ""))


class SentenceSampler:
    """``report -> caption`` for the engine's ``text_transform``: one cleaned sentence drawn with
    torch's global generator (``caption="sentence"``) or all of them (``"report"``). A report without
    a usable sentence gives its cleaned words (ours: the official dataset drops such studies)."""

    def __init__(self, caption: str = "sentence", stop_words: int = 0) -> None:
        self.caption, self.stop_words = caption, stop_words

    def __call__(self, report: str) -> str:
        import torch

        sentences = report_sentences(report, self.stop_words)
        if not sentences:
            return " ".join(_clean_words(report or ""))
        if self.caption == "report":
            return " ".join(sentences)
        return sentences[int(torch.randint(len(sentences), ()))]


def word_slots(tokens: Sequence[str], length: int, aggregate: bool = True, sep_token: str = "[SEP]") -> tuple[list[int], int]:
    """Word slot of every token position and the caption's word count (official ``aggregate_tokens``
    and ``cap_lens``).

    ``tokens``: the token strings of one padded row; ``length``: its number of real tokens. A token
    starting with ``##`` joins the current word (``aggregate``), any other token opens the next slot;
    [CLS] is slot 0; [SEP] takes its own slot and ends the caption; later positions (padding) get −1.
    The word count is the number of slots whose first token does not start with ``[`` (official:
    ``len([w for w in sent if not w.startswith("[")])``, so [CLS], [SEP] and [UNK] do not count).
    """
    slots, firsts, slot, done = [], [], -1, False
    for position, token in enumerate(tokens):
        if done or position >= length:
            slots.append(-1)
            continue
        if not (aggregate and token.startswith("##") and slot >= 0):
            slot += 1
            firsts.append(token)
        slots.append(slot)
        done = token == sep_token
    return slots, sum(not first.startswith("[") for first in firsts)
