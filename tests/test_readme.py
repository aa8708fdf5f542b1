"""README.md is read in five minutes and points into the site; its code blocks run in tests/test_docs.py."""

from __future__ import annotations

import re

from .conftest import TESTS

REPO = TESTS.parent
README = REPO / "README.md"
MAX_LINES = 200


def links(text: str) -> list[str]:
    """Targets of the Markdown links and images of ``text``."""
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= MAX_LINES


def test_readme_links_point_at_files_of_the_repository() -> None:
    text = README.read_text()
    local = [t for t in links(text) if not re.match(r"[a-z]+://", t)]
    assert local, "README.md links to nothing"
    missing = [t for t in local if not (REPO / t.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    pages = {t.split("#", 1)[0] for t in local if t.startswith("docs/")}
    for section in ("getting-started", "models", "training", "datasets", "pretrained", "demo", "ablation"):
        assert f"docs/{section}.md" in pages, f"README.md does not point at docs/{section}.md"


def test_readme_shows_the_quickstart_result_the_demo_and_how_to_build_the_site() -> None:
    text = README.read_text()
    assert "make quickstart" in text and "make test" in text
    assert "docs/images/quickstart_gallery.png" in text and "docs/images/demo.png" in text
    assert "39.6%" in text and "31.5%" in text  # the quickstart's numbers (docs/getting-started.md)
    assert "Segmenter.from_pretrained" in text
    assert "make docs" in text and "build/site/index.html" in text
