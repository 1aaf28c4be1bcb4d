"""Griffe extension: read xphyda's numpydoc docstrings the way Sphinx and numpydoc do.

Loaded from ``mkdocs.yml`` (``extensions: [docs/_ext/numpydoc_compat.py]``, a path
relative to the configuration file).  It rewrites the docstrings in griffe's memory
once the package is loaded; the source files are not changed.

Sphinx roles
    mkdocstrings does not read reStructuredText, so ``:func:`discover_grid```,
    ``:class:`~xphyda.physics.operators.SphereGrid``` and the like become *optional*
    autorefs cross-references.  The target is resolved like Sphinx does (a full path,
    else relative to the object, its class, its module and the parent packages); it
    is a link when the target is rendered somewhere in the documentation and plain
    code otherwise (``xarray.apply_ufunc``, a module without an API section).  An
    optional reference never warns, so the strict build does not depend on which
    modules are documented.  ``~a.b.c`` shows ``c``; ``title <target>`` shows ``title``.
    On a ``name : type`` line, which is rendered as code, a role becomes its title.

Parameter groups and choices
    numpydoc allows ``sigma_min, sigma_max : float`` and ``solver : {"a", "b"}``.
    griffe gives every name of a group the signature default of the first one, and
    takes the first choice as the default even when the signature says otherwise, so
    the "Default" column would be wrong.  Groups are split into one entry per name
    (same type and description) and choices are written ``"a" | "b"``, so each
    default comes from the signature.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|obj|exc|const|term):`(?P<body>[^`]+)`")
TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
# a numpydoc "name : type" line: what follows the colon is rendered as code, so no markup there
PARAM_LINE = re.compile(r"^\s*\**\w[\w, *]*\s:\s")
# an entry of a Parameters section: names (one or a group), then an optional " : type"
ENTRY = re.compile(r"^(?P<names>\**\w+(?:,\s*\**\w+)*)(?P<rest>\s:\s.*)?$")
CHOICES = re.compile(r"^\s:\s\{(?P<choices>[^{}]+)\}(?P<tail>.*)$")
PARAMETER_SECTIONS = {"parameters", "other parameters"}


# --------------------------------------------------------------------------- roles
def _lookup(scope: griffe.Object, path: str) -> griffe.Object | griffe.Alias | None:
    try:
        return scope[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _resolve(obj: griffe.Object, target: str, root: griffe.Module) -> str | None:
    """Canonical path of ``target`` seen from ``obj``, or None when it is not in the package."""
    target = target.lstrip(".")
    candidates = []
    if target == root.name or target.startswith(root.name + "."):
        candidates.append(root if target == root.name else _lookup(root, target[len(root.name) + 1 :]))
    scope: Any = obj
    while scope is not None:
        if not isinstance(scope, griffe.Alias) and (scope.is_module or scope.is_class):
            candidates.append(_lookup(scope, target))
        scope = scope.parent
    for found in candidates:
        if found is None:
            continue
        try:
            return (
                found.final_target.canonical_path if isinstance(found, griffe.Alias) else found.canonical_path
            )
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return found.path
    return None


def rewrite_roles(text: str, obj: griffe.Object, root: griffe.Module) -> str:
    """Replace every Sphinx role of ``text`` by an optional autorefs cross-reference."""

    def title_of(match: re.Match) -> str:
        body = match.group("body").strip()
        titled = TITLED.match(body)
        if titled:
            return titled.group("title")
        return body[1:].rsplit(".", 1)[-1] if body.startswith("~") else body

    def link(match: re.Match) -> str:
        body = match.group("body").strip()
        titled = TITLED.match(body)
        target = (titled.group("target") if titled else body).strip().lstrip("~")
        identifier = _resolve(obj, target, root) or target
        return f'<autoref identifier="{html.escape(identifier)}" optional>`{title_of(match)}`</autoref>'

    lines = text.split("\n")
    return "\n".join(ROLE.sub(title_of if PARAM_LINE.match(line) else link, line) for line in lines)


# --------------------------------------------------------------------------- parameters
def _entry_lines(name_part: str, rest: str | None) -> str:
    rest = rest or ""
    choices = CHOICES.match(rest)
    if choices:
        rest = (
            " : " + " | ".join(c.strip() for c in choices.group("choices").split(",")) + choices.group("tail")
        )
    return name_part + rest


def rewrite_parameters(text: str) -> str:
    """Split parameter groups into one entry per name; write choices as ``"a" | "b"``."""
    lines = text.split("\n")
    out: list[str] = []
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"\s*-{3,}\s*", following):
            section = line.strip().lower()
            out += [line, following]
            i += 2
            continue
        entry = ENTRY.match(line) if section in PARAMETER_SECTIONS else None
        if entry is None:
            out.append(line)
            i += 1
            continue
        j = i + 1  # the description: the indented (or blank) lines that follow
        while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():  # blank lines after the entry stay outside it
            j -= 1
        description = lines[i + 1 : j]
        for name in re.split(r",\s*", entry.group("names")):
            out.append(_entry_lines(name, entry.group("rest")))
            out += description
        i = j
    return "\n".join(out)


# --------------------------------------------------------------------------- extension
def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue
        yield from _walk(member)


class NumpydocCompat(griffe.Extension):
    """Rewrite Sphinx roles, parameter groups and choices (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is None:
                continue
            value = obj.docstring.value
            if "---" in value:
                value = rewrite_parameters(value)
            if ":`" in value:
                value = rewrite_roles(value, obj, pkg)
            obj.docstring.value = value

    on_package_loaded = on_package  # the name of this hook in griffe 1.x
