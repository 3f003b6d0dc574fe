"""The README stays short and every page's relative links lead somewhere (issue 21)."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# docs/*.md, not docs/bench/: that holds copies of run reports whose links point into their run folders
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) and ![alt](target); the target may be <bracketed> and followed by a "title"
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\s*\)")
# [label]: target
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")  # http:, https:, mailto:, protocol-relative


def relative_links(text):
    """The relative link targets of a Markdown text, outside code blocks and code spans, without #fragments."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    for match in [*INLINE.finditer(text), *REFERENCE.finditer(text)]:
        target = match.group(1).strip("<>")
        if EXTERNAL.match(target):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if path:
            yield path


def test_link_parser():
    text = (
        "[a](docs/a.md) ![b](img/b.png \"title\") [c](https://x.org/c.md) [d](#anchor) [e](f.md#part)\n"
        "`[g](in/code.md)`\n```\n[h](in/fence.md)\n```\n[ref]: ref/target.md\n[i](<with space.md>)\n"
    )
    assert list(relative_links(text)) == ["docs/a.md", "img/b.png", "f.md", "with space.md", "ref/target.md"]


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; at most 200 (the rest belongs in docs/)"


def test_readme_names_the_test_command():
    """CI runs the README's test command: `.ci/run` calls `make test`."""
    assert "make test" in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    missing = [
        target
        for target in relative_links(page.read_text(encoding="utf-8"))
        if not (page.parent / target).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"
