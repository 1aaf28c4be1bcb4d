"""Torch back end of the diffusion model (arrays only; no xarray, no pint).

Importing :mod:`xphyda` does not import torch; importing :mod:`xphyda.model` does.

* :mod:`~xphyda.model.schedule` -- EDM noise levels for sampling and training;
* :mod:`~xphyda.model.precond` -- EDM preconditioning, the Gaussian oracle denoiser, the loss;
* :mod:`~xphyda.model.unet` -- a small sphere-aware U-Net;
* :mod:`~xphyda.model.guidance` -- observation terms and posterior guidance (MMPS, diag, DPS);
* :mod:`~xphyda.model.sampler` -- ensemble sampling, one random generator per member;
* :mod:`~xphyda.model.checkpoint` -- safetensors weights with a JSON model card;
* :mod:`~xphyda.model.device` -- device and dtype resolution.
"""

from .checkpoint import architecture_card, build_from_card, load_checkpoint, load_model, save_checkpoint
from .device import resolve_device, resolve_dtype
from .guidance import GuidedDenoiser, ObsTerm
from .precond import EDMDenoiser, GaussianDenoiser, denoising_loss
from .sampler import member_generator, sample
from .schedule import edm_sigmas, evaluations, loss_weight, training_sigmas
from .unet import UNet, sphere_pad

__all__ = [
    "EDMDenoiser",
    "GaussianDenoiser",
    "GuidedDenoiser",
    "ObsTerm",
    "UNet",
    "architecture_card",
    "build_from_card",
    "denoising_loss",
    "edm_sigmas",
    "evaluations",
    "load_checkpoint",
    "load_model",
    "loss_weight",
    "member_generator",
    "resolve_device",
    "resolve_dtype",
    "sample",
    "save_checkpoint",
    "sphere_pad",
    "training_sigmas",
]
