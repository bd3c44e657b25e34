"""The worker's send loop: claim a batch, send it, record every answer, follow its pipelines.

A delivery moves ``pending -> sending -> succeeded | pending (retry) | failed``. Deliveries
travel in batches (an event's fan-out, a sweep: task messages of up to HOOKS_BATCH_SIZE ids);
a single delivery is a batch of one, decided by the very same code.

1. **Claim** (``hooks.claims``) with one conditional UPDATE for the batch; whoever changes a
   row sends it, so a redelivered task message (acks_late, a crashed worker) never sends
   twice at once. Two deliveries of one (hook, pipeline) in the same batch: only the earlier
   is claimed; the later is queued when the earlier finishes.
2. In the claim's transaction the attempts' log rows are written with the request headers
   (``hooks.headers``, secrets redacted). Then, outside any transaction, the one HTTP seam
   sends the stored bodies (``transport.send_many``), HOOKS_SEND_CONCURRENCY at a time.
3. One transaction records every result (``hooks.results``): the log rows, each delivery
   finished or given its next attempt time, each hook's health (``hooks.policy``). A finished
   delivery immediately sends or queues the next one of its pipeline, so order costs no
   sweep delay.

People's actions are in ``hooks.services``, the beat jobs in ``hooks.sweeper``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from hooks import transport
from hooks.body_templates import TemplateError, body_to_send
from hooks.claims import (
    Claimed,
    backlog,
    claim_deliveries,
    claimable_deliveries,
    insert_attempts,
    load_claimed,
    next_in_order,
)
from hooks.headers import build_headers, request_for
from hooks.models import DeliveryAttempt
from hooks.queue import enqueue_on_commit, enqueue_retries_on_commit
from hooks.results import RecordedBatch, record_batch_results

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long one task goes on sending the next deliveries of the pipelines it finished one of.
FOLLOW_SECONDS = 5.0


def deliver_batch(delivery_ids: Iterable[int], *, fill_from_backlog: bool = False) -> list[int]:
    """Send the deliveries among ``delivery_ids`` that can be claimed, and record each
    result; returns their attempts' ids. The others (not due, hook disabled, an earlier one
    of their pipeline unfinished, claimed elsewhere) are left as they are.

    With ``fill_from_backlog`` (the task does this), a batch whose own deliveries can be
    claimed also takes other due deliveries whose messages are still queued, up to
    HOOKS_BATCH_SIZE: under a backlog batches grow, and a batch costs the same few
    statements whatever its size. Their own messages then find them taken and stop at a
    read.

    A batch is claimed, and its log rows written, in one short transaction; the requests
    go out with no transaction open, HOOKS_SEND_CONCURRENCY at a time; every result is then
    recorded in one transaction, each decided by the same rules as a batch of one.

    When deliveries finish and their (hook, pipeline) has a next one due, this task sends
    those next, for up to FOLLOW_SECONDS, rather than queueing messages that would wait
    behind everything queued meanwhile: the transaction recording one batch claims the
    next, so an ordered stream of events costs one transaction per step and no trip through
    the broker. What is left after that time is queued. Should the worker die meanwhile,
    the rows are still pending: the sweeper queues them.
    """
    started = time.monotonic()
    now = timezone.now()
    # The candidates whose hook is probing: only they need the claim's probe step.
    probing: set[int] = set()
    candidates = claimable_deliveries(delivery_ids, now, probing=probing)
    if not candidates:
        return []
    if fill_from_backlog:
        candidates += backlog(candidates, now, probing=probing)
    with transaction.atomic():
        batch = _start_batch(candidates, now, probing=probing)
    attempt_ids: list[int] = []
    while batch is not None:
        attempt_ids.extend(batch.attempt_ids)
        # No transaction is open while the requests are on the network.
        results = _send_batch(batch)
        following = time.monotonic() - started < FOLLOW_SECONDS
        batch, recorded = _while_database_unavailable(
            partial(_finish_batch, batch, results, following=following)
        )
        # After the retried recording, never inside it: the recording has committed.
        _queue_late_arrivals(recorded)
    return attempt_ids


def _finish_batch(
    batch: _Batch, results: list[transport.TransportResult], *, following: bool
) -> tuple[_Batch | None, RecordedBatch]:
    """Record a sent batch's results; claim the next deliveries of its pipelines when still
    following them (returned, with what was recorded), or queue them."""
    with transaction.atomic():
        recorded = record_batch_results(batch.claimed, batch.attempt_ids, results)
        if recorded.next_ids and following:
            next_batch = _start_batch(recorded.next_ids, timezone.now())
        else:
            enqueue_on_commit(recorded.next_ids)
            next_batch = None
        # Sent when due, not at the first sweep after (hooks.queue).
        enqueue_retries_on_commit(recorded.retries)
        # Last, after the next batch's claim too: hooks.stats on the order of locks.
        recorded.add_to_rollup()
    recorded.count()  # committed
    return next_batch, recorded


def _queue_late_arrivals(recorded: RecordedBatch) -> None:
    """Queue the next delivery of a stream that had none when this batch looked for it, but
    has one now that its recording committed (one read, only for streams it found none in).

    Where another transaction can commit while this one runs (PostgreSQL), the next event of
    a stream may be written between this batch's look for it and its commit. That event's own
    message can reach a worker before this commit too, find the stream's earlier delivery
    still unfinished and stop, leaving the event to the sweeper, a claim lease later (a
    minute, seen in the path benchmark). Looking once more after the commit closes that gap:
    a next delivery written before it is found now; one written after it finds the stream
    free when its own message arrives."""
    if not recorded.streams_without_next:
        return
    try:
        late = next_in_order(recorded.streams_without_next)
    except DatabaseError as error:
        # The results are recorded; what this read would have found, the sweeper finds.
        logger.warning("Could not look for deliveries written meanwhile (%s)", error)
        return
    if late:
        enqueue_on_commit(late)  # outside a transaction: published at once


def _while_database_unavailable(record: Callable[[], T]) -> T:
    """Run ``record`` (a transaction), again while the database cannot be reached, for up to
    one claim lease.

    The requests are out by then: giving up would leave the deliveries ``sending`` until their
    lease runs out, and the sweeper would send them all again. A database restart takes
    seconds; waiting here records each result once, as soon as it is back. Past the lease the
    sweeper has taken the deliveries back anyway, and the error is raised.
    """
    deadline = time.monotonic() + settings.HOOKS_CLAIM_LEASE_SECONDS
    pause = 0.1
    while True:
        try:
            return record()
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + pause >= deadline:
                raise
            logger.warning("Could not record delivery results (%s); trying again", error)
            connection.close()  # the next try connects afresh
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


@dataclass
class _Batch:
    """Claimed deliveries, the headers to send each with, and their attempts' log rows."""

    claimed: list[Claimed]
    headers: list[dict[str, str]]
    attempt_ids: list[int]
    # Index in ``claimed`` -> why its request could not even be built (no request goes out).
    unsendable: dict[int, str] = field(default_factory=dict)


def _send_batch(batch: _Batch) -> list[transport.TransportResult]:
    """Every claimed delivery's result, in the batch's order: the answer to its request, or
    a failure saying why no request went out."""
    sendable = [index for index in range(len(batch.claimed)) if index not in batch.unsendable]
    answers = iter(
        transport.send_many(
            [
                request_for(
                    batch.claimed[index].hook, batch.claimed[index].body, batch.headers[index]
                )
                for index in sendable
            ]
        )
    )
    return [
        transport.TransportResult.failed(batch.unsendable[index])
        if index in batch.unsendable
        else next(answers)
        for index in range(len(batch.claimed))
    ]


def _start_batch(
    delivery_ids: list[int], now: datetime, *, probing: set[int] | None = None
) -> _Batch | None:
    """Claim what can be claimed of ``delivery_ids`` and write the attempts' log rows (in
    the caller's transaction); None when nothing could be claimed. ``probing``: as for
    ``claim_deliveries``."""
    claimed_ids = claim_deliveries(delivery_ids, now, probing=probing)
    if not claimed_ids:
        return None
    claimed = load_claimed(claimed_ids)
    headers: list[dict[str, str]] = []
    unsendable: dict[int, str] = {}
    for index, item in enumerate(claimed):
        try:
            item.body = body_to_send(item.hook.custom_webhook_template, item.body)
        except TemplateError as failed:
            # GitLab logs it as an internal error with request_data {}, and backs off.
            headers.append({})
            item.body = "{}"
            unsendable[index] = failed.message
            continue
        try:
            headers.append(
                build_headers(
                    item.hook,
                    body=item.body.encode(),
                    idempotency_key=item.idempotency_key,
                    event_uuid=item.event_uuid,
                    object_kind=item.object_kind,
                    sequence=item.sequence,
                )
            )
        except Exception as exc:  # a row no form or API would save (a signing secret, say)
            logger.exception(
                "Delivery %s (hook %s): its request could not be built",
                item.delivery_id,
                item.hook.pk,
            )
            headers.append({})
            unsendable[index] = (
                f"the request could not be built: {transport.exception_summary(exc)}"
            )
    return _Batch(claimed, headers, insert_attempts(claimed, headers, now), unsendable)


def deliver(delivery_id: int) -> DeliveryAttempt | None:
    """Send one delivery if it can be claimed (a batch of one); returns its attempt, or None
    when there was nothing to do."""
    attempt_ids = deliver_batch([delivery_id])
    return DeliveryAttempt.objects.get(pk=attempt_ids[0]) if attempt_ids else None
