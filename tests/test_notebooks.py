"""The notebooks of ``examples/`` execute without error, on small settings, and render their figures.

Each notebook has a cell tagged ``parameters``; like papermill, the test inserts
a cell after it that overrides some of them.  The kernel is ``python3`` and
runs in a temporary folder; xphyda is imported from this checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel for the python3 kernel")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MAX_BYTES = 300_000  # stored notebooks stay small (saved outputs included)

SMALL = {
    "quickstart.ipynb": "n_stations = 150",
    "stations_qc_physics.ipynb": "n_random = 60",
    "train_your_own_prior.ipynb": (
        "steps = 2\nn_times = 16\nnlat, nlon = 8, 16\nbatch_size = 2\nmembers = 2\nsample_steps = 2"
    ),
}


def _kernel_available() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return False
    return True


def _with_parameters(nb, source: str):
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            injected = nbformat.v4.new_code_cell(source)
            injected.metadata["tags"] = ["injected-parameters"]
            nb.cells.insert(i + 1, injected)
            return nb
    raise AssertionError("the notebook has no cell tagged 'parameters'")


def test_every_notebook_is_tested_and_small():
    found = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
    assert found == sorted(SMALL)
    for name in found:
        assert (EXAMPLES / name).stat().st_size < MAX_BYTES, f"{name} is larger than {MAX_BYTES} bytes"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs(name, tmp_path, monkeypatch):
    if not _kernel_available():
        pytest.skip("no 'python3' Jupyter kernel: python -m ipykernel install --user")
    nb = _with_parameters(nbformat.read(EXAMPLES / name, as_version=4), SMALL[name])
    # the kernel imports xphyda from this checkout, whether or not it is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the cell and the traceback
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    figures = [o for o in outputs if {"image/png", "image/jpeg"} & set(o.get("data", {}))]
    assert figures, f"{name} rendered no figure"
    assert not [o for o in outputs if o.get("output_type") == "error"]
