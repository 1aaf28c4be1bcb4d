"""The documentation: the strict mkdocs build, the quickstart's code, the API page's modules.

The build test is skipped when the docs tools are not installed
(``pip install -e ".[docs]"`` or ``scripts/build_docs.sh`` installs them).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_docs_build_strict(tmp_path):
    """``mkdocs build --strict``: any warning (broken link or anchor, docstring that does not parse) fails."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    assert "WARNING" not in log, log
    api = (site / "api" / "index.html").read_text()
    # numpydoc sections were parsed and rendered, and Sphinx roles became links
    assert 'id="xphyda.physics.residuals.physics_residual"' in api
    assert "Parameters:" in api and "Returns:" in api
    assert ":func:`" not in api
    assert "Copernicus" in (site / "index.html").read_text()


def test_quickstart_code_runs(run_doc_page):
    """Every ``python`` block of the quickstart runs, in order, in one namespace."""
    namespace = run_doc_page("quickstart.md", min_blocks=5)
    assert namespace["res"].attrs["units"] == "m"
    assert list(namespace["summary"].data_vars) == ["hydrostatic_rms", "hydrostatic_relative"]


def test_api_page_documents_importable_modules():
    """Every ``::: module`` of the API page exists and imports."""
    targets = re.findall(r"^::: ([\w.]+)", (DOCS / "api.md").read_text(), flags=re.MULTILINE)
    assert "xphyda.physics.residuals" in targets and "xphyda.model.train" in targets
    for name in targets:
        importlib.import_module(name)


def test_griffe_extension_reads_numpydoc_like_sphinx():
    """The docs' griffe extension: roles resolved like Sphinx, parameter groups split, choices kept."""
    griffe = pytest.importorskip("griffe")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from numpydoc_compat import rewrite_parameters, rewrite_roles
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    pkg = griffe.load("xphyda", search_paths=[str(ROOT)])
    func = pkg["physics.residuals.physics_residual"]
    text = rewrite_roles(
        "See :func:`available`, :class:`~xphyda.grid.Grid` and :func:`xarray.apply_ufunc`.\n"
        "grid : :class:`~xphyda.grid.Grid`",
        func,
        pkg,
    )
    assert '<autoref identifier="xphyda.physics.residuals.available" optional>`available`</autoref>' in text
    assert '<autoref identifier="xphyda.grid.Grid" optional>`Grid`</autoref>' in text
    assert '<autoref identifier="xarray.apply_ufunc" optional>`xarray.apply_ufunc`</autoref>' in text
    assert text.endswith("grid : Grid")  # a type is rendered as code: plain text there
    doc = 'Parameters\n----------\na, b : float\n    Bounds.\nsolver : {"x", "y"}, optional\n    S.\n'
    assert rewrite_parameters(doc).splitlines()[2:] == [
        "a : float",
        "    Bounds.",
        "b : float",
        "    Bounds.",
        'solver : "x" | "y", optional',
        "    S.",
    ]
