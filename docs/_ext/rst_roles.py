"""Griffe extension: render Sphinx cross-reference roles of the docstrings as links.

xphyda's docstrings are numpydoc and use Sphinx roles (``:func:`discover_grid```,
``:class:`~xphyda.physics.operators.SphereGrid```).  mkdocstrings does not read
reStructuredText, so this extension rewrites each role, once the package is loaded,
into an *optional* autorefs cross-reference:

* the target is resolved like Sphinx does: as a full path, else relative to the
  object, its class, its module and the parent packages;
* it becomes a link when the target is rendered somewhere in the documentation,
  and plain code otherwise (an external name such as ``xarray.apply_ufunc``, or a
  module without an API section): an optional reference never warns, so the strict
  build does not depend on which modules are documented;
* ``~a.b.c`` displays ``c``, ``title <target>`` displays ``title``.

Loaded from ``mkdocs.yml`` (``extensions: [docs/_ext/rst_roles.py]``, a path relative
to the configuration file).  The docstrings in the source are not changed.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|obj|exc|const|term):`(?P<body>[^`]+)`")
TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


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
        found = root if target == root.name else _lookup(root, target[len(root.name) + 1 :])
        candidates.append(found)
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
                found.canonical_path
                if not isinstance(found, griffe.Alias)
                else found.final_target.canonical_path
            )
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return found.path
    return None


def rewrite(text: str, obj: griffe.Object, root: griffe.Module) -> str:
    """Replace every Sphinx role of ``text`` by an optional autorefs cross-reference."""

    def sub(match: re.Match) -> str:
        body = match.group("body").strip()
        titled = TITLED.match(body)
        if titled:
            title, target = titled.group("title"), titled.group("target").strip()
        else:
            target = body
            title = body[1:].rsplit(".", 1)[-1] if body.startswith("~") else body
        target = target.lstrip("~")
        identifier = _resolve(obj, target, root) or target
        return f'<autoref identifier="{html.escape(identifier)}" optional>`{title}`</autoref>'

    return ROLE.sub(sub, text)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue
        yield from _walk(member)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles into optional autorefs cross-references (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None and ":`" in obj.docstring.value:
                obj.docstring.value = rewrite(obj.docstring.value, obj, pkg)

    on_package_loaded = on_package  # the name of this hook in griffe 1.x
