"""MkDocs hooks: repository files outside ``docs/``, and the docstrings' Sphinx roles as links.

- Pages link to repository files as they would on GitHub, relative to their own file
  (``../notebooks/complexity.ipynb``, ``../ablation/quickstart/pool_size.png``). The site keeps each
  such file at its repository path under the site's root (``notebooks/complexity.ipynb``, which
  mkdocs-jupyter renders as a page) and the link is rewritten to it. A link to a file that does not
  exist stays as written, so ``mkdocs build --strict`` reports it.
- The docstrings name objects as Sphinx does (``:func:`~lrsa_seg.models.load_pretrained```); in the
  API reference these become links to the object's entry where the reference documents it, and
  plain code otherwise.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

LINK = re.compile(r"(\]\()(\.\./[^)\s#]+)")
"""A Markdown link or image whose target climbs out of the page's folder: ``](../x/y.png``."""

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):<code>(~?)([\w.]+?)(\(\))?</code>")
"""A Sphinx role as Markdown renders it: ``:func:<code>~pkg.mod.name</code>``."""

DOCUMENTED = re.compile(r"^::: ([\w.]+)", flags=re.M)
"""An object the API reference documents (a mkdocstrings block)."""


def _repository_file(docs_dir: Path, page_uri: str, target: str) -> str | None:
    """The repository path of ``target`` linked from ``page_uri`` if it is an existing file outside ``docs_dir``."""
    resolved = ((docs_dir / page_uri).parent / target).resolve()
    repo = docs_dir.parent
    if not resolved.is_file() or not resolved.is_relative_to(repo) or resolved.is_relative_to(docs_dir):
        return None
    return resolved.relative_to(repo).as_posix()


def _nav_paths(nav: Any) -> list[str]:
    """Every file named in the ``nav`` configuration."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_paths(value)]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_paths(item)]
    return []


@event_priority(100)  # before mkdocs-jupyter, which turns the added notebooks into pages
def on_files(files: Files, config: Any) -> Files:
    """Add the outside files that pages link to, and those the navigation names, at their repository paths."""
    docs_dir = Path(config.docs_dir).resolve()
    wanted = [p for p in _nav_paths(config.nav) if not (docs_dir / p).exists() and (docs_dir.parent / p).is_file()]
    for page in list(files.documentation_pages()):
        for _, target in LINK.findall(Path(page.abs_src_path).read_text(encoding="utf-8")):
            path = _repository_file(docs_dir, page.src_uri, target)
            if path is not None:
                wanted.append(path)
    for path in dict.fromkeys(wanted):
        if files.get_file_from_path(path) is None:
            # Read from the repository root (not File.generated: mkdocs-jupyter's wrapper needs src_dir).
            files.append(File(path, str(docs_dir.parent), config.site_dir, config.use_directory_urls))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point the page's links to outside files at their copies in the site."""
    docs_dir = Path(config.docs_dir).resolve()
    folder = posixpath.dirname(page.file.src_uri) or "."

    def rewrite(match: re.Match[str]) -> str:
        path = _repository_file(docs_dir, page.file.src_uri, match.group(2))
        return match.group(0) if path is None else match.group(1) + posixpath.relpath(path, folder)

    return LINK.sub(rewrite, markdown)


def _documented(docs_dir: Path) -> dict[str, str]:
    """Short name -> full path of every object the API reference pages document."""
    paths = [m for page in sorted((docs_dir / "api").glob("*.md")) for m in DOCUMENTED.findall(page.read_text())]
    return {path.rsplit(".", 1)[-1]: path for path in paths}


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Sphinx roles in rendered docstrings -> cross-references (resolved by mkdocs-autorefs, optional)."""
    documented = _documented(Path(config.docs_dir))

    def reference(match: re.Match[str]) -> str:
        short, path, call = match.group(1), match.group(2), match.group(3) or ""
        title = (path.rsplit(".", 1)[-1] if short else path) + call
        fallback = documented.get(path.rsplit(".", 1)[-1])
        slug = f' slug="{fallback}"' if fallback and fallback != path else ""
        return f'<autoref identifier="{path}"{slug} optional><code>{title}</code></autoref>'

    return ROLE.sub(reference, html)
