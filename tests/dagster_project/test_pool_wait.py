"""A step blocked on a pool slot sleeps until its next claim instead of retrying at once."""

import time

from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

import dagster_project.definitions  # noqa: F401  (loads the fix, as every run worker does)


def _blocked(next_claim_in_s: float) -> InstanceConcurrencyContext:
    context = InstanceConcurrencyContext.__new__(InstanceConcurrencyContext)
    context._pending_claims = {"classifier"}
    context._pending_timeouts = {"classifier": time.time() + next_claim_in_s}
    return context


def test_a_blocked_step_sleeps_until_its_next_claim() -> None:
    assert 1.5 < _blocked(2.0).interval_to_next_pending_claim_check() <= 2.0
    assert _blocked(-1.0).interval_to_next_pending_claim_check() == 0.0
    idle = _blocked(5.0)
    idle._pending_claims = set()
    assert idle.interval_to_next_pending_claim_check() == 0.0
