"""Devices and floating-point types for the torch model.

Nothing here assumes CUDA: ``device="auto"`` picks CUDA when torch sees a GPU
and the CPU otherwise, and asking for a device that is not there raises a
:class:`~xphyda.errors.ModelError` that says how to fix the call.
"""

from __future__ import annotations

import torch

from ..errors import ModelError

__all__ = ["resolve_device", "resolve_dtype"]

_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
}
_HALF = (torch.float16, torch.bfloat16)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a device into a usable device.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or None) gives CUDA when available, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ModelError
        If CUDA is requested but unavailable, the index does not exist, or the
        name is not a device.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ModelError(
            f"device {device!r} is not a torch device; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r} was requested but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, cuda build: {torch.version.cuda}); "
                "pass device='cpu' or device='auto', or install a CUDA build of torch"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ModelError(
                f"device {device!r} was requested but only {count} CUDA device(s) exist; "
                f"use an index below {count}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device {device!r} was requested but MPS is unavailable; pass device='cpu'")
    return dev


def resolve_dtype(
    dtype: str | torch.dtype | None = None, *, device: torch.device | str = "cpu"
) -> torch.dtype:
    """Check a floating-point type for the model on ``device``.

    Parameters
    ----------
    dtype : str, torch.dtype or None
        ``"float32"`` (the default when None), ``"float64"``; half types only
        on a GPU.
    device : torch.device or str
        Where the computation runs.

    Raises
    ------
    ModelError
        For a non-floating type, or a half type on the CPU (slow and
        inaccurate there: use float32).

    Examples
    --------
    >>> resolve_dtype("float64")
    torch.float64
    >>> resolve_dtype(None)
    torch.float32
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise ModelError(f"dtype {dtype!r} is not understood; expected one of {sorted(_DTYPES)}")
        dtype = _DTYPES[key]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ModelError(f"dtype {dtype!r} is not a floating-point torch dtype; pass torch.float32")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dtype in _HALF and dev.type == "cpu":
        raise ModelError(
            f"dtype {dtype} on the CPU is slow and loses the precision the sampler needs; "
            "pass dtype=torch.float32 (or float64)"
        )
    return dtype
