from __future__ import annotations

from system.rag.prompt import SYSTEM_PROMPT, build_messages, user_message
from system.rag.schemas import Source


def test_prompt_numbers_passages_with_their_source_then_the_question() -> None:
    sources = [
        Source(
            id="json.dumps#0",
            text="json.dumps()\n\nSerialize ``obj`` to a JSON formatted ``str``.",
            score=0.6,
        ),
        Source(id="json.dump#0", text="Serialize obj as a JSON stream.", score=0.5),
    ]
    messages = build_messages("  How do I serialize to JSON?  ", sources)
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[1]["role"] == "user"
    assert messages[1]["content"] == (
        "Context:\n"
        "[1] (source: json.dumps#0) json.dumps() Serialize ``obj`` to a JSON formatted ``str``.\n"
        "[2] (source: json.dump#0) Serialize obj as a JSON stream.\n"
        "\n"
        "Question: How do I serialize to JSON?"
    )


def test_prompt_without_passages_has_no_numbered_line() -> None:
    message = user_message("anything?", [])
    assert "[1] " not in message
    assert message.endswith("\n\nQuestion: anything?")
