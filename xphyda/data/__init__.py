"""Training and evaluation data for xphyda.

* :mod:`xphyda.data.simulate` -- the GCM training corpus generator
  (:func:`xphyda.data.simulate.simulate`; needs the ``xphyda[gcm]`` extra).

The function is deliberately not re-exported here: ``xphyda.data.simulate`` stays
the module, so ``mock.patch("xphyda.data.simulate.<name>")`` and
``python -m xphyda.data.simulate`` keep working.
"""
