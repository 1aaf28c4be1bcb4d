"""Torch back end of the diffusion model (arrays only; no xarray, no pint)."""
