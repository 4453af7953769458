"""Deterministic embeddings with lexical similarity: feature hashing of words, word pairs, char trigrams.

Texts that share words (or word stems, through the trigrams) get a high cosine similarity, so a retrieval over
a real corpus returns relevant passages. Each feature is hashed with BLAKE2b, never Python's `hash()` (which
is salted per process), so the same text gives the same vector in every process, on every run and machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from hashlib import blake2b

import numpy as np
import numpy.typing as npt

DEFAULT_DIM = 256  # the RAG core indexes 256-d vectors (docs/architecture.md)
MAX_DIM = 4096  # larger than any real embedding model offers
WORD_WEIGHT = 1.0
BIGRAM_WEIGHT = 0.5  # word order matters, but less than the words themselves
TRIGRAM_WEIGHT = 0.3  # lets "parse", "parses" and "parser" meet, without drowning whole-word matches
_WORD = re.compile(r"[a-z0-9]+")
# Words too common to say anything about a passage; without them "how do I" in a question matches everything.
STOPWORDS = frozenset(
    """a an and are as at be but by can do does for from has have how i if in into is it its me my of on or
    our s so that the their them then there these this to was we what when where which who why will with you
    your""".split()
)

Vector = npt.NDArray[np.float32]


@lru_cache(maxsize=1 << 18)
def _feature_hash(feature: str) -> int:
    return int.from_bytes(blake2b(feature.encode(), digest_size=8).digest(), "little")


def _word_features(words: Sequence[str]) -> Iterable[tuple[str, float]]:
    for word in words:
        yield word, WORD_WEIGHT
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            yield "3:" + padded[i : i + 3], TRIGRAM_WEIGHT
    for first, second in zip(words, words[1:], strict=False):
        yield f"2:{first} {second}", BIGRAM_WEIGHT


def content_words(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    content = [word for word in words if word not in STOPWORDS]
    return content or words


def embed_text(text: str, dim: int = DEFAULT_DIM) -> Vector:
    """A unit-length float32 vector of `dim` components; the same text always gives the same vector."""
    features = list(_word_features(content_words(text))) or [("<empty>", 1.0)]
    indices = np.empty(len(features), dtype=np.int64)
    weights = np.empty(len(features), dtype=np.float64)
    for i, (feature, weight) in enumerate(features):
        digest = _feature_hash(feature)
        indices[i] = digest % dim
        # The top bit gives each feature a sign, so collisions cancel out on average instead of piling up.
        weights[i] = weight if digest >> 63 else -weight
    vector = np.bincount(indices, weights=weights, minlength=dim)
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # every feature cancelled out: fall back to a fixed direction rather than a NaN
        vector[_feature_hash(text) % dim] = 1.0
        norm = 1.0
    return (vector / norm).astype(np.float32)


def tokens_as_text(tokens: Sequence[int]) -> str:
    """A token-id array (as the SDK may send) embedded as the words `t<id>`: equal arrays, equal vectors."""
    return " ".join(f"t{token}" for token in tokens)


def count_tokens(text: str) -> int:
    """Tokens are whitespace-separated words, on every endpoint (docs/architecture.md)."""
    return len(text.split())
