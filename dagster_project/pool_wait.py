"""A step waiting for a pool slot sleeps between its claims instead of spinning a core.

Dagster 1.13.27's `InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns
`min(0, ...)`, never more than 0 s, so the in-process executor retries its claim in a tight
loop: a classifier fold queued behind another (the `gpu` pool allows one) took 87 % of a core
from the fold that was training (2-core VM, 3 Dec 2026). The intended interval is the time to
the next scheduled claim, at least 0 (Dagster's back-off: 1 s, growing to 15 s).
Loaded with the definitions, so every run worker has it; pinned with dagster==1.13.27.
"""

from __future__ import annotations

import time

from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext


def _interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    if not self._pending_claims or not self._pending_timeouts:
        return 0.0
    return max(0.0, min(self._pending_timeouts.values()) - time.time())


InstanceConcurrencyContext.interval_to_next_pending_claim_check = (
    _interval_to_next_pending_claim_check)
