"""The requests a cell sends: named by their place in the load, the same content in every cell at one load."""

from __future__ import annotations

from loadtests.locust.user_support import QUESTIONS, TAG_SYMBOLS, UserSequence, request_query
from mocks.embeddings import content_words, embed_text


def test_a_request_name_gives_the_same_query_under_the_same_seed_only() -> None:
    assert request_query("a0.17", seed=5) == request_query("a0.17", seed=5)
    assert request_query("a0.17", seed=5) != request_query("a0.17", seed=6)
    assert request_query("a0.17", seed=5) != request_query("a0.18", seed=5)


def test_every_request_of_a_run_has_its_own_content_and_a_known_question() -> None:
    names = [f"a0.{i}" for i in range(5000)] + [f"u0.{u}.{n}" for u in range(50) for n in range(100)]
    queries = [request_query(name, seed=7) for name in names]
    assert len(set(queries)) == len(queries)  # no two requests share a mock draw by accident
    questions = {query.rsplit(" [", 1)[0] for query in queries}
    assert questions == set(QUESTIONS)  # every question is asked, none invented


def test_the_tag_leaves_retrieval_exactly_as_for_the_plain_question() -> None:
    """The mock embeds [a-z0-9] words only: a punctuation tag changes the request's key, not its vector."""
    assert content_words(TAG_SYMBOLS) == []
    for name in ("a0.1", "a3.999", "u1.7.42"):
        query = request_query(name, seed=11)
        plain = query.rsplit(" [", 1)[0]
        assert query != plain
        assert (embed_text(query) == embed_text(plain)).all()


def test_closed_loop_users_name_their_requests_in_order() -> None:
    first, second = UserSequence(0), UserSequence(0)
    assert first.prefix != second.prefix
    assert [first.next_name() for _ in range(3)] == [f"{first.prefix}.{n}" for n in range(3)]
