"""What the delivery path counts for Prometheus (``/metrics``, config/metrics.py).

The metrics live in the process that records them (a worker, or the web for a test or a
resend); with ``PROMETHEUS_MULTIPROC_DIR`` set (``manage.py serve`` sets it for its children)
each process writes them to files there and the web's scrape adds them up.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Histogram

# Each attempt's outcome: it succeeded, it failed and a retry is scheduled, or it failed
# and no retry follows (the last scheduled attempt, or a person's one-off redelivery).
SUCCEEDED = "succeeded"
FAILED_ATTEMPT = "failed_attempt"
GIVEN_UP = "given_up"

EVENTS = Counter(
    "pipehook_events",
    "Events written to the outbox (a change at least one hook wants), by object kind.",
    ["kind"],
)
DELIVERIES = Counter(
    "pipehook_deliveries",
    "Delivery attempts recorded, by outcome and hook id.",
    ["outcome", "hook"],
)
ATTEMPT_DURATION = Histogram(
    "pipehook_delivery_attempt_duration_seconds",
    "How long a receiver took to answer a delivery attempt (or to fail it).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENT_TO_RECEIVER = Histogram(
    "pipehook_event_to_receiver_seconds",
    "From a pipeline change's event to its receiver's 2xx, retries included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000),
)


def count_attempt(
    hook_id: int, outcome: str, duration_ms: int, event_created_at: datetime, now: datetime
) -> None:
    """One recorded attempt of a scheduled delivery."""
    DELIVERIES.labels(outcome=outcome, hook=str(hook_id)).inc()
    ATTEMPT_DURATION.observe(duration_ms / 1000)
    if outcome == SUCCEEDED:
        EVENT_TO_RECEIVER.observe(max(0.0, (now - event_created_at).total_seconds()))
