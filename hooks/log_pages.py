"""A hook's delivery log narrowed to response statuses, paged newest first at any size.

The events API's ``status`` filter selects status ranges (2xx, 4xx, 5xx, single codes) and
"no response" (a null status). Walking a hook's log newest first and filtering it reads the
whole log when the filter matches little of it (0.8 s on SQLite, 3 s on PostgreSQL for a
hook of 500,000 attempts: docs/benchmarks.md), and neither database can be trusted to see
that coming: SQLite keeps no statistics, PostgreSQL estimates hook and status independently.
So the matches are read from the index (hook, response_status, id) in queries whose best
plan is that index whatever the estimates:

- **Counting:** each range (and the null status) is one range of the index, read in the
  index's order up to the count limit; the ids come back with the count.
- **Few matches** (all of them counted): those ids are sorted here, and the page's rows
  fetched by id.
- **Many:** each status present in a range is a stream of the index already in id order
  (``status = v`` or ``IS NULL``, then id); the streams are merged here, newest first, up
  to the end of the page. A stream reads at most offset + page + 1 entries, whether the
  matches are dense or all at the far end of the log.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from django.db.models import Q, QuerySet

from hooks.policy import RESPONSE_CLASSES

FIELD = "response_status"
# The index's own order, backwards, asked for in every read of it: no other index gives it,
# so any other plan would sort, and neither database's estimates can make that look cheaper.
# Within one status (or none) it is id order, newest first.
INDEX_ORDER = (f"-{FIELD}", "-id")


@dataclass(frozen=True)
class StatusSelection:
    """Response statuses asked for: disjoint, sorted ranges and/or no response at all."""

    ranges: tuple[range, ...] = ()
    no_response: bool = False

    @classmethod
    def of(cls, ranges: Iterable[range], no_response: bool = False) -> StatusSelection:
        """The union of ``ranges`` (overlapping or adjacent ones merged), and ``no_response``."""
        merged: list[range] = []
        for part in sorted((r for r in ranges if r), key=lambda r: r.start):
            if merged and part.start <= merged[-1].stop:
                last = merged.pop()
                part = range(last.start, max(last.stop, part.stop))
            merged.append(part)
        return cls(tuple(merged), no_response)

    @classmethod
    def of_class(cls, name: str) -> StatusSelection:
        return cls.of([RESPONSE_CLASSES[name]])

    def __or__(self, other: StatusSelection) -> StatusSelection:
        return StatusSelection.of(
            (*self.ranges, *other.ranges), self.no_response or other.no_response
        )

    def parts(self) -> list[Q]:
        """One condition per range of the index: each a single seek and scan."""
        conditions = [between(part) for part in self.ranges]
        if self.no_response:
            conditions.append(Q(**{f"{FIELD}__isnull": True}))
        return conditions


def between(statuses: range) -> Q:
    """``statuses`` as a range of the index, a single status too: ``status = 200`` would let
    PostgreSQL take the status for a constant and see the order asked for in any walk of the
    hook's entries by id (a walk it may estimate short and find as long as the log)."""
    return Q(**{f"{FIELD}__gte": statuses.start, f"{FIELD}__lt": statuses.stop})


class StatusFilteredLog:
    """The attempts of ``queryset`` (one hook's, newest first) with a status in
    ``selection``, for the paginators: ``count_up_to(limit)``, and slices as lists.

    ``queryset`` must be restricted to one hook: the index begins with the hook.
    """

    def __init__(self, queryset: QuerySet, selection: StatusSelection):
        self.queryset = queryset
        self.selection = selection
        # Every matching id, newest first, once a count found fewer than its limit.
        self._all_ids: list[int] | None = None

    def count_up_to(self, limit: int) -> int:
        """How many match, reading no more than ``limit`` index entries in all."""
        ids: list[int] = []
        for condition in self.selection.parts():
            remaining = limit - len(ids)
            if remaining <= 0:
                break
            ids += ids_of(self.queryset.filter(condition).order_by(*INDEX_ORDER), remaining)
        if len(ids) < limit:
            self._all_ids = sorted(ids, reverse=True)
        return len(ids)

    def __getitem__(self, window: slice) -> list:
        if not isinstance(window, slice) or window.step not in (None, 1):
            raise TypeError("StatusFilteredLog takes slices [start:stop] only")
        start, stop = window.start or 0, window.stop
        if self._all_ids is not None:
            ids = self._all_ids[start:stop]
        else:
            if stop is None:
                raise ValueError("a page of a long log needs an end")
            ids = list(islice(self._newest_first(stop), start, stop))
        return self._rows(ids)

    def _newest_first(self, count: int) -> Iterator[int]:
        """Ids of the matches, newest first, from streams each in id order."""
        streams = [self._stream(condition, count) for condition in self._stream_conditions()]
        return heapq.merge(*streams, reverse=True)

    def _stream_conditions(self) -> list[Q]:
        conditions = []
        for part in self.selection.ranges:
            statuses = [part.start] if len(part) == 1 else self._statuses_present(part)
            conditions += [between(range(status, status + 1)) for status in statuses]
        if self.selection.no_response:
            conditions.append(Q(**{f"{FIELD}__isnull": True}))
        return conditions

    def _statuses_present(self, statuses: range) -> list[int]:
        """The distinct statuses of the range in the log: one index seek each, however
        many entries each has."""
        found: list[int] = []
        after = statuses.start - 1
        while True:
            status = (
                self.queryset.filter(**{f"{FIELD}__gt": after, f"{FIELD}__lt": statuses.stop})
                .order_by(FIELD)
                .values_list(FIELD, flat=True)
                .first()
            )
            if status is None:
                return found
            found.append(status)
            after = status

    def _stream(self, condition: Q, count: int) -> list[int]:
        return ids_of(self.queryset.filter(condition).order_by(*INDEX_ORDER), count)

    def _rows(self, ids: list[int]) -> list:
        """The page's rows by id (a primary key lookup each), in the order of ``ids``."""
        if not ids:
            return []
        rows = {row.pk: row for row in self.queryset.filter(pk__in=ids).order_by()}
        return [rows[pk] for pk in ids if pk in rows]


def ids_of(queryset: QuerySet, limit: int) -> list[int]:
    return list(queryset.values_list("id", flat=True)[:limit])
