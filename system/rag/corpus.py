"""The corpora `ragload ingest` indexes: the standard library's docstrings (the default) and .md/.txt files.

Docstrings are read with `ast` from the stdlib's source files; no module is imported (some have side
effects on import, e.g. `antigravity` opens a browser). Every chunk has a stable id, such as
"json.dumps#0" or "docs/guide.md#3", so re-indexing the same text yields the same points.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_CHUNK_CHARS = 800  # about 150 words: a passage the mock quotes and a real model reads at a glance
MIN_DOCSTRING_CHARS = 20  # shorter docstrings ("Return self.") say nothing a question could match
TEXT_SUFFIXES = (".md", ".txt")

# Parts of the stdlib left out of the default corpus: tests, the IDLE/Tk GUI, the 2to3 tool, the demos,
# bundled wheels and anything installed on top of the stdlib. Private modules (_name) are skipped as well.
SKIPPED_STDLIB_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "lib-dynload",
        "__pycache__",
    }
)
SKIPPED_STDLIB_MODULES = frozenset({"this", "antigravity", "__main__", "turtle"})

_HEADING = re.compile(r"^#{1,6}\s")
_BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str  # where the text came from: "stdlib:json/__init__.py" or a file path


def split_text(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Paragraph-aligned pieces of at most `max_chars` (a longer paragraph is cut between words)."""
    pieces: list[str] = []
    current = ""
    for paragraph in _paragraphs(text):
        for part in _cut_words(paragraph, max_chars):
            if current and len(current) + 2 + len(part) > max_chars:
                pieces.append(current)
                current = ""
            current = f"{current}\n\n{part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK_LINES.split(text) if p.strip()]


def _cut_words(paragraph: str, max_chars: int) -> Iterator[str]:
    line = ""
    for word in paragraph.split(" "):
        if line and len(line) + 1 + len(word) > max_chars:
            yield line
            line = ""
        line = f"{line} {word}" if line else word
    if line:
        yield line


# ---- the standard library -------------------------------------------------------------------------------


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(modules: Collection[str] | None = None) -> list[tuple[str, Path]]:
    """(module name, source file) of the public stdlib modules; `modules` keeps these top-level ones."""
    root = stdlib_root()
    found: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        parts = relative.with_suffix("").parts
        if any(part in SKIPPED_STDLIB_DIRS or part.startswith(("_", ".")) for part in parts[:-1]):
            continue
        name = ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)
        if parts[-1] != "__init__" and parts[-1].startswith("_"):
            continue
        if "-" in name or parts[0] in SKIPPED_STDLIB_MODULES:
            continue
        if modules is not None and parts[0] not in modules:
            continue
        found.append((name, path))
    return found


def stdlib_chunks(modules: Collection[str] | None = None) -> Iterator[Chunk]:
    """Chunks of the module, class and function docstrings of the stdlib (or of the given modules)."""
    root = stdlib_root()
    for module, path in stdlib_files(modules):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a file for another interpreter version; nothing to index
        source = f"stdlib:{path.relative_to(root).as_posix()}"
        for qualname, header, doc in _docstrings(tree, module):
            for index, piece in enumerate(_docstring_pieces(doc, MAX_CHUNK_CHARS - len(header) - 2)):
                yield Chunk(id=f"{qualname}#{index}", text=f"{header}\n\n{piece}", source=source)


def _docstring_pieces(doc: str, max_chars: int) -> list[str]:
    """The summary paragraph on its own (what a question matches best), then the details in larger pieces."""
    summary, _, details = doc.partition("\n\n")
    return [*split_text(summary, max_chars), *split_text(details, max_chars)]


def _docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, str, str]]:
    """(qualified name, header, docstring) for the module and its public classes, methods and functions."""
    doc = ast.get_docstring(tree)
    if doc and len(doc) >= MIN_DOCSTRING_CHARS:
        yield module, f"Module {module}", doc
    yield from _members(tree.body, module)


def _members(body: Iterable[ast.stmt], prefix: str) -> Iterator[tuple[str, str, str]]:
    seen: set[str] = set()  # a property's setter repeats its getter's name: the getter's docstring wins
    for node in body:
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name.startswith("_") or node.name in seen:
            continue
        seen.add(node.name)
        qualname = f"{prefix}.{node.name}"
        doc = ast.get_docstring(node)
        if doc and len(doc) >= MIN_DOCSTRING_CHARS:
            yield qualname, _header(node, qualname), doc
        if isinstance(node, ast.ClassDef):
            yield from _members(node.body, qualname)


def _header(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef, qualname: str) -> str:
    """The name alone: argument lists add words (skipkeys, ensure_ascii…) that blur what a passage says."""
    return f"class {qualname}" if isinstance(node, ast.ClassDef) else f"{qualname}()"


# ---- the user's own files ------------------------------------------------------------------------------


def text_files(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(stable name, file) for each .md/.txt file given or found under a given folder, sorted.

    The name is the path relative to the argument's parent: `docs/` gives "docs/guide.md", `a.md` "a.md".
    """
    found: dict[str, Path] = {}
    for given in paths:
        if not given.exists():
            raise FileNotFoundError(f"no such file or folder: {given}")
        base = given.resolve().parent
        candidates = [given] if given.is_file() else sorted(p for p in given.rglob("*") if p.is_file())
        for path in candidates:
            if path.suffix.lower() in TEXT_SUFFIXES:
                found[path.resolve().relative_to(base).as_posix()] = path
    return sorted(found.items())


def file_chunks(paths: Sequence[Path]) -> Iterator[Chunk]:
    """Chunks of .md/.txt files: a Markdown heading starts a new chunk; paragraphs are never split mid-way."""
    for name, path in text_files(paths):
        text = path.read_text(encoding="utf-8", errors="replace")
        pieces = [piece for section in _sections(text) for piece in split_text(section)]
        for index, piece in enumerate(pieces):
            yield Chunk(id=f"{name}#{index}", text=piece, source=str(path))


def _sections(text: str) -> list[str]:
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if _HEADING.match(line) and any(s.strip() for s in sections[-1]):
            sections.append([])
        sections[-1].append(line)
    return ["\n".join(lines) for lines in sections if any(s.strip() for s in lines)]
