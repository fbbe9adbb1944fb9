"""Captions as conditions: a word tokeniser built from the training captions, saved with the run as JSON.

The default text encoder (nets/layers.TextEncoder) is trained jointly with the denoiser, so it needs no downloaded
weights: its vocabulary is the training captions' words (lower-cased runs of letters and digits), most frequent
first. A caption becomes `max_len` token ids: 0 pads, 1 stands for a word the training captions never used.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from ..imports import import_callable

log = logging.getLogger("steadydiff")

PAD, UNKNOWN = 0, 1
FIRST_WORD = 2  # id of vocab[0]
MAX_LEN = 32  # longest caption kept, in words
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Tokeniser:
    vocab: tuple[str, ...]
    max_len: int

    @classmethod
    def fit(cls, captions: Sequence[str], max_len: int = MAX_LEN) -> Tokeniser:
        counts = Counter(w for c in captions for w in words(c))
        if not counts:
            raise DataError("the captions hold no words; give each item a caption of words")
        vocab = tuple(sorted(counts, key=lambda w: (-counts[w], w)))
        longest = max(len(words(c)) for c in captions)
        return cls(vocab=vocab, max_len=max(1, min(max_len, longest)))

    @property
    def size(self) -> int:
        return FIRST_WORD + len(self.vocab)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        lookup = {w: FIRST_WORD + i for i, w in enumerate(self.vocab)}
        out = np.full((len(texts), self.max_len), PAD, dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [lookup.get(w, UNKNOWN) for w in words(text)][:self.max_len]
            out[i, :len(ids)] = ids
        return out

    def check_prompt(self, text: Any) -> str:
        """A prompt the run can read: a string with at least one word of the training captions."""
        if not isinstance(text, str):
            raise DataError(f"prompt {text!r} ({type(text).__name__}) is not text; give a string")
        vocab = set(self.vocab)
        unknown = [w for w in words(text) if w not in vocab]
        if len(unknown) == len(words(text)):
            some = ", ".join(self.vocab[:15])
            raise DataError(f"prompt {text!r} has no word the training captions used, so the run cannot read it; "
                            f"its words include: {some}")
        if unknown:
            log.warning("prompt %r: the training captions never used %s; the text encoder reads them as unknown",
                        text, ", ".join(repr(w) for w in unknown))
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab), "max_len": self.max_len}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokeniser:
        return cls(vocab=tuple(d["vocab"]), max_len=int(d["max_len"]))


def embed_texts(encoder: str, texts: Sequence[str]) -> np.ndarray:
    """(N, K) float32 embeddings of `texts` by the pretrained encoder "MODULE:ATTR", each distinct text once."""
    fn = import_callable(encoder, "data.text_encoder", "a function mapping a list of strings to an (N, K) array",
                         "my_package.text:embed")
    distinct = sorted(set(texts))
    try:
        out = fn(list(distinct))
        out = out.detach().float().cpu().numpy() if hasattr(out, "detach") else np.asarray(out, dtype=np.float64)
    except DataError:
        raise
    except Exception as e:  # anything the user's encoder raises
        raise DataError(f"data.text_encoder {encoder!r} failed on {len(distinct)} captions: {type(e).__name__}: {e}") \
            from e
    if out.ndim != 2 or len(out) != len(distinct):
        raise DataError(f"data.text_encoder {encoder!r} returned shape {out.shape} for {len(distinct)} captions; "
                        "return one row per caption, shaped (N, K)")
    if not np.isfinite(out).all():
        raise DataError(f"data.text_encoder {encoder!r} returned NaN or Inf")
    row = {t: i for i, t in enumerate(distinct)}
    return out[[row[t] for t in texts]].astype(np.float32)
