"""A griffe extension for the documentation site: ppgen's reST-flavoured docstrings as Markdown.

ppgen's docstrings are Google-style but keep a few reStructuredText habits that Sphinx
understands and Markdown does not. Before griffe parses a docstring this rewrites, in its
text only (the source files are untouched):

- doctest blocks (``>>>`` and their output) become fenced ``pycon`` code blocks, dedented to
  the paragraph they follow, so they render as code rather than nested quotes;
- ``Example: <title>`` followed by a blank line and an indented block becomes a bold
  ``**Example:** <title>`` paragraph and its block is dedented;
- ``.. math:: ...`` (with its indented continuation lines) becomes a ``$$ ... $$`` block and
  ``:math:`x``` becomes ``$x$`` (rendered by ``pymdownx.arithmatex``);
- an ``Arguments:`` section whose body is prose (``The same as PixelCNN.``), not
  ``name: description`` items, becomes a bold ``**Arguments:**`` paragraph;
- cross-reference roles (``:class:`~ppgen.fit.Fit```, ``:func:``, ``:meth:``, ...) become
  inline code (``Fit``).

Loaded by ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const|ref|py:\w+):`([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_EXAMPLE_TITLE = re.compile(r"^(\s*)Example:\s+(\S.*)$")
_PARAM_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params):\s*$")
_PARAM_ITEM = re.compile(r"^\s*\*{0,2}[\w.]+(?:\s*[,/]\s*\*{0,2}[\w.]+)*\s*(?:\(.*\))?:")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _role(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    if "<" in target and target.endswith(">"):  # :func:`text <target>`
        return f"`{target[: target.index('<')].strip()}`"
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def _titled_examples(lines: list[str]) -> list[str]:
    """``Example: title`` + blank line + indented block -> bold paragraph + dedented block."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _EXAMPLE_TITLE.match(lines[i])
        nxt = i + 1
        if m and nxt + 1 < len(lines) and not lines[nxt].strip():
            ind = len(m.group(1))
            j = nxt
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and _indent(lines[j]) > ind:
                end = j
                while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > ind):
                    end += 1
                block = lines[nxt:end]
                shift = min(_indent(b) for b in block if b.strip()) - ind
                out.append(f"{m.group(1)}**Example:** {m.group(2)}")
                out.extend(b[shift:] if b.strip() else "" for b in block)
                i = end
                continue
        out.append(lines[i])
        i += 1
    return out


def _prose_sections(lines: list[str]) -> list[str]:
    """``Arguments:`` followed by prose rather than ``name: description`` -> a paragraph."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _PARAM_SECTION.match(lines[i])
        body = lines[i + 1] if i + 1 < len(lines) else ""
        if m and body.strip() and _indent(body) > len(m.group(1)) and not _PARAM_ITEM.match(body):
            ind = len(m.group(1))
            out.append(f"{m.group(1)}**{m.group(2)}:** {body.strip()}")
            i += 2
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > ind:
                out.append(" " * ind + lines[i].strip())
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return out


def _fence_doctests(lines: list[str]) -> list[str]:
    """Wrap each run of doctest lines in a ``pycon`` fence at the paragraph's indentation."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        ind = _indent(line)
        end = i
        while end < len(lines) and lines[end].strip() and _indent(lines[end]) >= ind:
            end += 1
        target = ind
        prev = [p for p in out if p.strip()]
        if out and not out[-1].strip() and prev and _indent(prev[-1]) < ind:
            target = _indent(prev[-1])  # an indented block after a paragraph: not a code block
        pad = " " * target
        out.append(f"{pad}```pycon")
        out.extend(pad + b[ind:] for b in lines[i:end])
        out.append(f"{pad}```")
        i = end
    return out


def _math_blocks(lines: list[str]) -> list[str]:
    """``.. math:: expr`` and its more-indented continuation lines -> a ``$$`` block."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if not stripped.startswith(".. math::"):
            out.append(line)
            i += 1
            continue
        ind = _indent(line)
        body = [stripped[len(".. math::") :].strip()]
        j = i + 1
        if not body[0]:  # the expression on the following (indented) lines
            while j < len(lines) and not lines[j].strip():
                j += 1
        while j < len(lines) and lines[j].strip() and _indent(lines[j]) > ind:
            body.append(lines[j].strip())
            j += 1
        pad = " " * ind
        if out and out[-1].strip():
            out.append("")
        out.extend([f"{pad}$$", *(pad + b for b in body if b), f"{pad}$$"])
        if j < len(lines) and lines[j].strip():
            out.append("")
        i = j
    return out


def to_markdown(text: str) -> str:
    """The Markdown form of one docstring (see the module's docstring)."""
    lines = _math_blocks(text.splitlines())
    lines = _fence_doctests(_titled_examples(_prose_sections(lines)))
    # roles may span lines: rewrite each stretch of text between code fences as a whole
    converted: list[str] = []
    prose: list[str] = []
    in_fence = False

    def flush() -> None:
        text = _MATH_ROLE.sub(lambda m: f"${' '.join(m.group(1).split())}$", "\n".join(prose))
        converted.extend(_ROLE.sub(_role, text).split("\n") if prose else [])
        prose.clear()

    for line in lines:
        if line.lstrip().startswith("```"):
            if not in_fence:
                flush()
            in_fence = not in_fence
            converted.append(line)
        elif in_fence:
            converted.append(line)
        else:
            prose.append(line)
    flush()
    return "\n".join(converted)


class RSTToMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`to_markdown` before griffe parses it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
