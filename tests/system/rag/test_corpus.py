from __future__ import annotations

import sys
from pathlib import Path

from system.rag.corpus import MAX_CHUNK_CHARS, file_chunks, split_text, stdlib_chunks, stdlib_files


def test_stdlib_chunks_have_stable_unique_ids_and_the_summary_first() -> None:
    chunks = list(stdlib_chunks({"json"}))
    by_id = {chunk.id: chunk for chunk in chunks}
    assert len(by_id) == len(chunks)
    assert by_id["json.dumps#0"].text == "json.dumps()\n\nSerialize ``obj`` to a JSON formatted ``str``."
    assert by_id["json.dumps#0"].source == "stdlib:json/__init__.py"
    assert "json.encoder.JSONEncoder#0" in by_id and "json#0" in by_id
    assert [c.id for c in stdlib_chunks({"json"})] == [c.id for c in chunks]


def test_stdlib_corpus_skips_private_and_test_modules_and_imports_nothing() -> None:
    names = [name for name, _ in stdlib_files()]
    assert "json" in names and "os.path" not in names  # os.path is posixpath, a module of its own
    assert not [n for n in names if n.split(".")[0] in {"test", "idlelib", "antigravity", "this"}]
    assert not [n for n in names if any(part.startswith("_") for part in n.split("."))]
    assert "tabnanny" not in sys.modules
    assert any(chunk.id.startswith("tabnanny") for chunk in stdlib_chunks({"tabnanny"}))
    assert "tabnanny" not in sys.modules


def test_stdlib_chunks_skip_private_members() -> None:
    ids = [chunk.id for chunk in stdlib_chunks({"csv", "pathlib"})]
    assert ids and not [i for i in ids if any(part.startswith("_") for part in i.split("#")[0].split("."))]


def test_split_text_keeps_paragraphs_and_a_size_bound() -> None:
    text = "\n\n".join(f"paragraph {i} " + "word " * 50 for i in range(20))
    pieces = split_text(text)
    assert len(pieces) > 1
    assert all(len(piece) <= MAX_CHUNK_CHARS for piece in pieces)
    assert all(piece.startswith("paragraph") for piece in pieces)


def test_file_chunks_split_markdown_on_headings_with_ids_relative_to_the_argument(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text("# One\n\nFirst part.\n\n# Two\n\nSecond part.\n", encoding="utf-8")
    (docs / "sub" / "notes.txt").write_text("Plain text notes.", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG")
    chunks = list(file_chunks([docs]))
    assert [(c.id, c.text) for c in chunks] == [
        ("docs/guide.md#0", "# One\n\nFirst part."),
        ("docs/guide.md#1", "# Two\n\nSecond part."),
        ("docs/sub/notes.txt#0", "Plain text notes."),
    ]
    assert [c.id for c in file_chunks([docs / "guide.md"])] == ["guide.md#0", "guide.md#1"]
