"""Resolve the ``device`` setting once, at start."""

from __future__ import annotations

import re

import torch

from trainkit.errors import UserError


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda``/``cuda:N`` must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not m:
        raise UserError(f"device: {spec!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"device: {spec!r} requested but CUDA is not available on this machine "
                          "(use device: auto or cpu)")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"device: {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
