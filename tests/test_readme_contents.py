"""The README's table of contents lists every section, in order, with links that resolve."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _sections(text: str) -> list[tuple[int, str]]:
    fence, out = False, []
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{2,3} ", line) and line != "## Contents":
            out.append((line.index(" "), line.lstrip("#").strip()))
    return out


def _anchor(title: str, seen: dict[str, int]) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2 … on repeats."""
    a = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    n = seen.get(a, 0)
    seen[a] = n + 1
    return a if n == 0 else f"{a}-{n}"


def test_the_contents_list_every_section_in_order():
    text = README.read_text()
    contents = text[text.index("## Contents"):]
    contents = contents[:contents.index("\n## ", 1)]
    listed = re.findall(r"^( *)- \[.*\]\(#([^)]+)\)$", contents, re.M)
    seen: dict[str, int] = {"contents": 1}
    expected = [(" " * (2 * (level - 2)), _anchor(title, seen)) for level, title in _sections(text)]
    assert listed == expected


def test_links_into_the_measurements_page_resolve():
    page = README.parent / "docs" / "measurements.md"
    seen: dict[str, int] = {}
    anchors = {_anchor(title, seen) for _, title in _sections(page.read_text())}
    linked = set(re.findall(r"\(docs/measurements\.md#([^)]+)\)", README.read_text()))
    assert linked and linked <= anchors, linked - anchors
