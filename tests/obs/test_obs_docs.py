"""The Observations page: every ``python`` block of ``docs/observations.md`` runs, in order, in one namespace.

The page documents the three kinds of observation Dataset, the CSV reader, ``H`` from torch, the OI
ensemble and ``simulate`` with examples; this keeps those examples working (an example that fails,
such as an OI ensemble on a grid above ``ENSEMBLE_MAX_POINTS``, fails here).
"""

from __future__ import annotations

import pytest


def test_observations_page_code_runs(run_doc_page, capsys):
    pytest.importorskip("torch")
    from xphyda.baselines.oi import ENSEMBLE_MAX_POINTS
    from xphyda.obs import FLAGS

    ns = run_doc_page("observations.md", min_blocks=8)
    # the first example: an analysis with per-observation diagnostics
    assert {"t_flag", "t_innovation", "t_residual", "t_obs_error"} <= set(ns["analysis"].data_vars)
    assert "assimilate(method='oi')" in capsys.readouterr().out
    # the loop over the three kinds ends with the masked one: diagnostics on the grid
    assert ns["out"]["t_flag"].dims == ("time", "level", "latitude", "longitude")
    assert int((ns["out"]["t_flag"] == FLAGS["used"]).sum()) > 0
    # H from torch, and its adjoint
    assert tuple(ns["y"].shape) == (4, 3) and tuple(ns["x_back"].shape) == tuple(ns["x"].shape)
    # the OI ensemble example runs on a grid an ensemble accepts
    ens, small = ns["ens"], ns["small"]
    assert small.sizes["latitude"] * small.sizes["longitude"] <= ENSEMBLE_MAX_POINTS
    assert ens["t"].dims == ("member", "time", "level", "latitude", "longitude") and ens.sizes["member"] == 8
    assert float(ns["spread"].mean()) > 0.0
    # simulate with a given network keeps its ids along the chosen dimension
    assert ns["obs"]["wmo"].dims == ("site",) and ns["obs"]["wmo"].values.tolist() == [3772, 94767]
