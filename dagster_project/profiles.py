"""Run configuration per profile: `demo` is every config's default; `paper` is one option away."""

from __future__ import annotations

PAPER_RUN_CONFIG: dict = {"ops": {}}


def run_config_for(profile: str) -> dict:
    if profile == "demo":
        return {"ops": {}}
    if profile == "paper":
        return PAPER_RUN_CONFIG
    raise ValueError(f"Unknown profile {profile!r}; choose demo or paper.")
