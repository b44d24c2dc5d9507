"""Fixtures shared across test files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny convolutions gain nothing from threads, and lose a lot on a busy machine: the test
    runs on one torch thread, and the setting before it is restored after."""
    import torch  # here, so tests that never use torch do not load it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
