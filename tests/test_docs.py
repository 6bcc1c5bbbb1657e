"""Comments point at doc headings that exist: every `README: "Heading"`, `README "Heading"`,
`docs/<file>.md, "Heading"` and `the kiosk guide, "Heading"` in the code names a heading of that
document, and every local link in the docs names a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("*.py", "*.js", "*.css", "*.html", "*.yml", "*.sh", "Makefile", "Dockerfile*", "*.conf", "*.toml")
SKIP = {".venv", "node_modules", ".git", "staticfiles", ".mypy_cache", ".ruff_cache", "models"}
# A citation: the document, then a quoted heading that may run over a comment's line break.
CITATION = re.compile(r'(README:?|docs/(?P<doc>[\w-]+)\.md,|the kiosk guide,)\s*"(?P<heading>[^"]{2,80}?)"', re.S)
COMMENT_MARKS = re.compile(r"\s*(?:#|//|\*|\{#|<!--)?\s*\n\s*(?:#|//|\*|\{#)?\s*")


def headings(document: Path) -> set[str]:
    return {line.lstrip("#").strip() for line in document.read_text().splitlines() if line.startswith("#")}


def source_files() -> list[Path]:
    found = set()
    for pattern in SOURCES:
        for path in ROOT.rglob(pattern):
            if not SKIP & set(path.relative_to(ROOT).parts) and path.is_file() and path != Path(__file__):
                found.add(path)
    return sorted(found)


def citations() -> list[tuple[str, str, str]]:
    """(file, document, heading) for every citation in the code."""
    out = []
    for path in source_files():
        text = path.read_text(errors="replace")
        for match in CITATION.finditer(text):
            heading = COMMENT_MARKS.sub(" ", match["heading"]).strip()
            if match[1].startswith("README"):
                document = "README.md"
            elif match["doc"]:
                document = f"docs/{match['doc']}.md"
            else:
                document = "docs/kiosk.md"
            out.append((str(path.relative_to(ROOT)), document, heading))
    return out


def test_every_cited_heading_exists():
    found = citations()
    assert len(found) > 30  # the scan finds the code's citations
    known = {doc: headings(ROOT / doc) for doc in {doc for _, doc, _ in found}}
    missing = [(where, doc, heading) for where, doc, heading in found if heading not in known[doc]]
    assert missing == [], missing


def test_local_links_in_the_docs_exist():
    for document in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", document.read_text()):
            if "://" not in target:
                assert (document.parent / target).exists(), f"{document.name} links to {target}"
