"""The embedding function itself: deterministic (also across processes), unit length, lexically similar."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from mocks.embeddings import DEFAULT_DIM, embed_text

REPO_ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How do I parse a JSON document into a Python dictionary?"
JSON_PASSAGE = "json.loads parses a JSON document from a string and returns Python dicts and lists."
UNRELATED_PASSAGE = "The socket module provides access to the BSD socket interface for network connections."


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_same_text_same_vector_of_unit_length() -> None:
    first, second = embed_text(QUESTION), embed_text(QUESTION)
    assert first.shape == (DEFAULT_DIM,) and first.dtype == np.float32
    assert np.array_equal(first, second)
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-6


def test_same_vector_in_another_process() -> None:
    """Another interpreter (with its own randomised str hash) computes bit-identical vectors."""
    code = f"from mocks.embeddings import embed_text; print(embed_text({QUESTION!r}).tobytes().hex())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={"PYTHONHASHSEED": "random"},
    )
    assert bytes.fromhex(result.stdout.strip()) == embed_text(QUESTION).tobytes()


def test_a_question_scores_its_topic_above_an_unrelated_passage() -> None:
    question = embed_text(QUESTION)
    assert cosine(question, embed_text(JSON_PASSAGE)) > cosine(question, embed_text(UNRELATED_PASSAGE)) + 0.1


def test_word_forms_meet_through_trigrams() -> None:
    assert cosine(embed_text("parser"), embed_text("parses")) > cosine(
        embed_text("parser"), embed_text("socket")
    )


def test_dimension_and_edge_cases() -> None:
    assert embed_text("hello world", 64).shape == (64,)
    for text in ("", "the and of", "!!!"):
        vector = embed_text(text)
        assert np.isfinite(vector).all() and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-6
