"""The knowledge base: documents added on this machine (`moss kb add FILES...`: txt, md, html,
pdf), cut into passages of a few sentences, searched with BM25 (bm25s) over the words of
moss/words.py (jieba cuts Chinese, English is stemmed). The knowledge_search tool numbers what it
finds, so that answers cite it as [1], [2]. Kept in the data directory's kb/passages.jsonl, one
passage per line, written whole and renamed into place, so a crash never leaves half of it."""

import functools
import json
import os
import re
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path

from moss import paths
from moss.words import words

PASSAGE_CHARS = 700  # a passage: paragraphs joined up to this size, long ones cut at sentence ends
TOP = 3  # passages one search returns
SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


class KnowledgeError(ValueError):
    """A document that cannot be added; the message says why."""


@dataclass(frozen=True)
class Passage:
    source: str  # the file's name
    title: str
    position: int  # its place in the source, from 1
    text: str

    def cited(self, number: int) -> str:
        return f"[{number}] {self.title} ({self.source}, passage {self.position}): {self.text}"


class KnowledgeBase:
    """The passages of every added document, and a BM25 index over them built on first search
    (and again when the file changes: another process may have added documents)."""

    def __init__(self, folder: Path | None = None):
        self.file = (folder or paths.home() / "kb") / "passages.jsonl"
        self._loaded: tuple[float, list[Passage], object] | None = None

    def passages(self) -> list[Passage]:
        return self._index()[1]

    def sources(self) -> dict[str, int]:
        """Each document's name and how many passages it has."""
        counts: dict[str, int] = {}
        for p in self.passages():
            counts[p.source] = counts.get(p.source, 0) + 1
        return counts

    def add(self, path: Path) -> int:
        """Add (or replace) a document; returns its passage count."""
        title, text = read(path)
        found = [Passage(path.name, title, i, chunk) for i, chunk in enumerate(cut(text), 1)]
        if not found:
            raise KnowledgeError(f"{path}: no text in it")
        self._write([p for p in self.passages() if p.source != path.name] + found)
        return len(found)

    def remove(self, source: str) -> int:
        passages = self.passages()
        kept = [p for p in passages if p.source != source]
        removed = len(passages) - len(kept)
        if removed:
            self._write(kept)
        return removed

    def search(self, query: str, top: int = TOP) -> list[Passage]:
        _, passages, index = self._index()
        terms = words(query)
        if index is None or not terms:
            return []
        ids, scores = index.retrieve([terms], k=min(top, len(passages)), show_progress=False)
        return [passages[i] for i, s in zip(ids[0], scores[0]) if s > 0]

    def _index(self) -> tuple[float, list[Passage], object]:
        stamp = self.file.stat().st_mtime if self.file.exists() else 0.0
        if self._loaded is None or self._loaded[0] != stamp:
            passages = [Passage(**json.loads(line)) for line in self.file.read_text(encoding="utf-8").splitlines()
                        if line.strip()] if stamp else []
            self._loaded = (stamp, passages, _bm25([words(p.title + " " + p.text) for p in passages]))
        return self._loaded

    def _write(self, passages: list[Passage]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.file.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in passages)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(self.file)
        self._loaded = None


@functools.cache
def shared() -> KnowledgeBase:
    """This data directory's knowledge base, kept loaded (it reloads when the file changes)."""
    return KnowledgeBase()


def search_result(query: str) -> str:
    """What the knowledge_search tool tells the model: the numbered passages, to cite."""
    found = shared().search(query)
    if not found:
        return "No passage in the knowledge base matches. 知识库中没有相关内容。"
    return "\n".join(p.cited(i) for i, p in enumerate(found, 1)) + \
        "\nCite the passages you use as [1], [2]. 引用时写 [1]、[2]。"


def read(path: Path) -> tuple[str, str]:
    """A document's title and text (KnowledgeError for a kind or file that cannot be read)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise KnowledgeError(f"{path}: only {', '.join(SUFFIXES)} files can be added")
    try:
        if suffix == ".pdf":
            return path.stem, _pdf(path)
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise KnowledgeError(f"{path}: {exc.strerror or exc}") from None
    if suffix in (".html", ".htm"):
        page = _Page()
        page.feed(raw)
        return (page.title.strip() or path.stem), "\n\n".join(page.blocks)
    heading = re.search(r"^#\s+(.+)$", raw, re.M) if suffix in (".md", ".markdown") else None
    return (heading.group(1).strip() if heading else path.stem), raw


def cut(text: str) -> list[str]:
    """Passages: paragraphs joined up to PASSAGE_CHARS; a longer paragraph cut at sentence ends."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        while len(paragraph) > PASSAGE_CHARS:
            ends = [m.end() for m in re.finditer(r"[.!?。！？]\s*", paragraph[:PASSAGE_CHARS])]
            at = ends[-1] if ends else PASSAGE_CHARS
            pieces.append(paragraph[:at].strip())
            paragraph = paragraph[at:].strip()
        if paragraph:
            pieces.append(paragraph)
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + len(piece) + 1 <= PASSAGE_CHARS // 2:
            out[-1] += " " + piece  # short paragraphs (headings, list items) join their neighbour
        else:
            out.append(piece)
    return out


def _bm25(tokens: list[list[str]]):
    if not tokens:
        return None
    import bm25s
    index = bm25s.BM25()
    index.index(tokens, show_progress=False)
    return index


def _pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise KnowledgeError("reading PDF needs pypdf: .venv/bin/pip install pypdf") from None
    try:
        return "\n\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    except (PdfReadError, ValueError) as exc:
        raise KnowledgeError(f"{path}: not a readable PDF ({exc})") from None


class _Page(HTMLParser):
    """An HTML page's title and the text of its blocks, without scripts and styles."""
    SKIP = {"script", "style", "noscript", "template"}
    BLOCKS = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "br", "section", "article", "pre"}

    def __init__(self):
        super().__init__()
        self.title, self.blocks, self._text, self._skip, self._in_title = "", [], [], 0, False

    def handle_starttag(self, tag, attrs):
        self._skip += tag in self.SKIP
        self._in_title = self._in_title or tag == "title"
        if tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag):
        self._skip -= tag in self.SKIP and self._skip > 0
        if tag == "title":
            self._in_title = False
        if tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skip:
            self._text.append(data)

    def close(self):
        super().close()
        self._flush()

    def _flush(self):
        text = " ".join("".join(self._text).split())
        if text:
            self.blocks.append(text)
        self._text = []
