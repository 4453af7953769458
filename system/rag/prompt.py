"""The chat prompt: a system message, then one user message with numbered passages and the question.

The format is an interface (docs/architecture.md, "The prompt"): the mock finds the line starting with
"[1] ", strips "(source: …) " and quotes that passage. Each passage is therefore kept on one line.
"""

from __future__ import annotations

from collections.abc import Sequence

from openai.types.chat import ChatCompletionMessageParam

from system.rag.schemas import Source

SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages. Cite the passages you use as [n]. "
    "If the passages do not contain the answer, say that you do not know."
)
NO_CONTEXT = "(no passages found)"


def passage_line(number: int, source: Source) -> str:
    text = " ".join(source.text.split())  # one line per passage: newlines inside would break the format
    return f"[{number}] (source: {source.id}) {text}"


def user_message(query: str, sources: Sequence[Source]) -> str:
    lines = [passage_line(n, source) for n, source in enumerate(sources, start=1)] or [NO_CONTEXT]
    context = "\n".join(lines)
    return f"Context:\n{context}\n\nQuestion: {query.strip()}"


def build_messages(query: str, sources: Sequence[Source]) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(query, sources)},
    ]
