"""``/healthz`` and ``/readyz``: whether the database and the broker answer, in JSON.

``/healthz`` is 200 when both answer and 503 with the reason when either does not.
``/readyz``, for a load balancer, is 200 whenever the database answers: without the broker
this process still takes every report (the rows wait, and the sweeper queues them once the
broker is back), so taking it out of rotation would lose what it can still accept.

Neither ever hangs: each check runs on a thread of its own and is given up on after
``PIPEHOOK_HEALTH_TIMEOUT_SECONDS``; its answer is kept for ``PIPEHOOK_HEALTH_CACHE_SECONDS``,
so probes from several balancers do not each open connections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from kombu import Connection

from pipelines.redaction import redact_text

# Threads for the checks: a check stuck on a dead peer holds its thread until its own socket
# timeout, and the next probe must still find one free.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str = ""

    def as_json(self) -> dict:
        return {"ok": self.ok, **({"reason": self.reason} if self.reason else {})}


def check_database() -> None:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # this thread's own connection: nothing keeps it


def check_broker() -> None:
    timeout = settings.PIPEHOOK_HEALTH_TIMEOUT_SECONDS
    with Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=timeout,
        transport_options={
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        },
    ) as broker:
        broker.ensure_connection(max_retries=0, timeout=timeout)  # no retry: report now


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "broker": check_broker}


class _Cache:
    def __init__(self):
        self.lock = threading.Lock()
        self.results: dict[str, CheckResult] = {}
        self.taken_at = float("-inf")

    def results_now(self) -> dict[str, CheckResult]:
        with self.lock:  # one probe checks; those arriving meanwhile get its answer
            if time.monotonic() - self.taken_at >= settings.PIPEHOOK_HEALTH_CACHE_SECONDS:
                self.results = run_checks()
                self.taken_at = time.monotonic()
            return self.results

    def clear(self) -> None:
        with self.lock:
            self.taken_at = float("-inf")


cache = _Cache()


def run_checks() -> dict[str, CheckResult]:
    timeout = settings.PIPEHOOK_HEALTH_TIMEOUT_SECONDS
    futures = {name: _checks.submit(check) for name, check in CHECKS.items()}
    deadline = time.monotonic() + timeout
    results = {}
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
            results[name] = CheckResult(True)
        except FutureTimeout:
            results[name] = CheckResult(False, f"no answer within {timeout:g} s")
        except Exception as error:
            # The driver's words (a refused port, a failed login), never a URL's password.
            reason = redact_text(f"{type(error).__name__}: {error}")
            results[name] = CheckResult(False, reason[:300])
    return results


def _answer(results: dict[str, CheckResult], needed: tuple[str, ...]) -> JsonResponse:
    ok = all(results[name].ok for name in needed)
    response = JsonResponse(
        {
            "status": "ok" if ok else "unavailable",
            "checks": {name: result.as_json() for name, result in results.items()},
        },
        status=200 if ok else 503,
    )
    # Django logs every 5xx as an error; a probe every few seconds would repeat the outage
    # the worker and the web already log, once a probe.
    response._has_been_logged = True
    return response


def healthz(request: HttpRequest) -> JsonResponse:
    return _answer(cache.results_now(), needed=("database", "broker"))


def readyz(request: HttpRequest) -> JsonResponse:
    return _answer(cache.results_now(), needed=("database",))
