"""Where torch runs and on how many CPU threads: one convention for every stage that uses torch.

`select_device(None)` or `"auto"` picks CUDA, then Apple MPS, then the CPU; a named device is used
as given, and CUDA asked for where there is none is refused. `torch_threads(n)` runs a block on
`n` CPU threads (None or 0: torch's setting as it is) and restores the setting on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pipelines.errors import ConfigurationError

AUTO_DEVICE = "auto"


def select_device(requested: str | None = AUTO_DEVICE) -> torch.device:
    """`requested` if named, else (None, "" or "auto") CUDA, then Apple MPS, then CPU."""
    if not requested or requested == AUTO_DEVICE:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"Device {requested!r} was asked for but CUDA is not available.")
    return device


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch CPU threads (None or <= 0: leave the current setting); the
    setting on entry is restored on exit."""
    before = torch.get_num_threads()
    if n is not None and n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
