#!/usr/bin/env bash
# Build the documentation with every warning an error (what CI runs).
#
#   scripts/build_docs.sh [SITE_DIR]      # default SITE_DIR: site/
#
# Uses the current Python environment (PYTHON, default: python3 or the active venv's python);
# installs the `docs` extra of xphyda (mkdocs, mkdocs-material, mkdocstrings[python]) into it
# first if mkdocs or mkdocstrings is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
SITE_DIR="${1:-site}"

if ! "$PYTHON" -c "import mkdocs, mkdocstrings, mkdocstrings_handlers.python, material" 2>/dev/null; then
    echo "build_docs: installing the docs extra into $("$PYTHON" -c 'import sys; print(sys.prefix)')" >&2
    # only the requirements of the docs extra (read from pyproject.toml): xphyda itself need not be
    # installed, mkdocstrings reads its source, and `pip install .[docs]` could pull a CUDA torch
    mapfile -t REQS < <("$PYTHON" - <<'PY'
try:
    import tomllib
    with open("pyproject.toml", "rb") as fh:
        reqs = tomllib.load(fh)["project"]["optional-dependencies"]["docs"]
except Exception:  # Python 3.10 (no tomllib) or no docs extra: the same list, by hand
    reqs = ["mkdocs", "mkdocs-material", "mkdocstrings[python]"]
print("\n".join(reqs))
PY
)
    "$PYTHON" -m pip install --quiet "${REQS[@]}"
fi

# Material's banner about MkDocs 2.0 is not a build warning; keep the log to real ones.
export NO_MKDOCS_2_WARNING=1
exec "$PYTHON" -m mkdocs build --strict --clean --site-dir "$SITE_DIR"
