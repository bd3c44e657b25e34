"""What ``manage.py serve`` tells the person at the console, besides warnings and errors: the
first start's credentials (kept in a file only its owner reads) and a line a minute of what
happened, read from the service's own ``/metrics`` as any scraper reads it."""

from __future__ import annotations

import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

CREDENTIALS_FILE_NAME = "first-start-credentials"
SCRAPE_TIMEOUT_SECONDS = 5.0


def write_credentials(path: Path, text: str) -> None:
    """Write ``text`` to a new file readable by its owner only (never a moment more open)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)  # O_CREAT's mode applies only to a new file


@dataclass(frozen=True)
class Totals:
    """The counters and gauges one summary line is made of, from one scrape."""

    events: float = 0
    sent: float = 0
    failed: float = 0
    given_up: float = 0
    due: float = 0
    oldest_due_seconds: float = 0


def scrape(base_url: str, token: str) -> Totals:
    request = urllib.request.Request(  # noqa: S310 (our own http:// address)
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT_SECONDS) as answer:  # noqa: S310
        text = answer.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if sample.name == "pipehook_deliveries_total":
                key += ":" + sample.labels["outcome"]
            values[key] = values.get(key, 0) + sample.value
    return Totals(
        events=values.get("pipehook_events_total", 0),
        sent=values.get("pipehook_deliveries_total:succeeded", 0),
        failed=values.get("pipehook_deliveries_total:failed_attempt", 0),
        given_up=values.get("pipehook_deliveries_total:given_up", 0),
        due=values.get("pipehook_deliveries_due", 0),
        oldest_due_seconds=values.get("pipehook_deliveries_oldest_due_age_seconds", 0),
    )


def summary_line(before: Totals, now: Totals, seconds: float) -> str:
    """E.g. ``last minute: 12 events, 30 deliveries sent, 2 failed (1 given up); 4 due, the
    oldest for 35 s``."""
    period = "last minute" if seconds == 60 else f"last {seconds:g} s"
    failed = (now.failed - before.failed) + (now.given_up - before.given_up)
    given_up = now.given_up - before.given_up
    line = (
        f"{period}: {now.events - before.events:.0f} events, "
        f"{now.sent - before.sent:.0f} deliveries sent, {failed:.0f} failed"
    )
    if given_up:
        line += f" ({given_up:.0f} given up)"
    if now.due:
        return line + f"; {now.due:.0f} due, the oldest for {now.oldest_due_seconds:.0f} s"
    return line + "; nothing due"


class Summary:
    """Logs a summary line every ``interval`` seconds while the service runs."""

    def __init__(self, base_url: str, token: str, interval: float, now: float):
        self.base_url = base_url
        self.token = token
        self.interval = interval
        self.due_at = now + interval
        self.last: Totals | None = None
        self.failing = False

    def start(self) -> None:
        """The counts the first line is the difference from (the web has just come up)."""
        self.last = self._scrape() or Totals()

    def tick(self, now: float) -> None:
        if self.interval <= 0 or now < self.due_at:
            return
        self.due_at = now + self.interval
        totals = self._scrape()
        if totals is None:
            return
        logger.info(summary_line(self.last or Totals(), totals, self.interval))
        self.last = totals

    def _scrape(self) -> Totals | None:
        try:
            totals = scrape(self.base_url, self.token)
        except (OSError, ValueError) as error:
            if not self.failing:  # said once, not every minute
                logger.warning(
                    "Could not read %s/metrics for the summary: %s", self.base_url, error
                )
            self.failing = True
            return None
        self.failing = False
        return totals
