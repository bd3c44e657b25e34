"""GitLab's offset pagination for every list of the v4 API.

``page`` and ``per_page`` (default 20, at most 100) pick the slice; the answer carries
GitLab's headers: ``X-Total``, ``X-Total-Pages`` (at least 1), ``X-Page``, ``X-Per-Page``,
``X-Next-Page`` and ``X-Prev-Page`` (empty strings when there is none) and a ``Link`` header
with ``prev``, ``next``, ``first`` and ``last`` relations, in that order, as
``Gitlab::Pagination::OffsetHeaderBuilder`` writes them. A page past the end is an empty list
with neither a next nor a previous page, like Kaminari's.

Counting stops past 10,000 rows, as GitLab's does (``paginate_with_limit_optimization``:
Kaminari's ``total_count_with_limit``, then ``without_count``): a longer list has no
``X-Total``, ``X-Total-Pages`` or ``last`` link, and whether a next page exists is read by
fetching one row more than the page. A list of millions (a hook's delivery log) thus never
costs a full COUNT(*).
"""

from __future__ import annotations

import math
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.utils.encoding import escape_uri_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines.errors import InvalidParameter
from pipelines.redaction import is_secret_parameter

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
# Kaminari::ActiveRecordRelationMethods::MAX_COUNT_LIMIT
MAX_COUNT_LIMIT = 10_000

PAGINATION_HEADERS = {
    "X-Total": "Number of items.",
    "X-Total-Pages": "Number of pages (at least 1).",
    "X-Page": "This page.",
    "X-Per-Page": "Items per page.",
    "X-Next-Page": "The next page, or empty.",
    "X-Prev-Page": "The previous page, or empty.",
    "Link": 'rel="prev", "next", "first" and "last" page URLs.',
}


def _read_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(f"{name} is invalid") from None


def read_page_params(request: Request) -> tuple[int, int]:
    """``(page, per_page)``: pages below 1 mean 1, per_page is clamped to 1..100."""
    page = _read_int(request, "page")
    per_page = _read_int(request, "per_page")
    page = page if page and page > 0 else 1
    if per_page is None or per_page < 1:
        per_page = DEFAULT_PER_PAGE
    return page, min(per_page, MAX_PER_PAGE)


def count_up_to(rows, limit: int) -> int:
    """How many of ``rows`` (at most ``limit``). A queryset is counted in its own order, so
    the count walks the index the page does; a list with a better way of counting itself
    has a ``count_up_to`` of its own."""
    if hasattr(rows, "count_up_to"):
        return rows.count_up_to(limit)
    return rows[:limit].count()


class GitLabPagination(BasePagination):
    """DRF pagination class; views also use ``paginate`` directly through it."""

    def paginate_queryset(self, queryset: QuerySet, request: Request, view=None) -> list:
        """A page of ``queryset``, or of anything sliced like one that has ``count_up_to``."""
        self.request = request
        self.page, self.per_page = read_page_params(request)
        offset = (self.page - 1) * self.per_page
        limited_total = count_up_to(queryset, MAX_COUNT_LIMIT + 1)
        if limited_total > MAX_COUNT_LIMIT:
            return self._page_without_count(queryset, offset)
        self.total = limited_total
        self.total_pages = max(1, math.ceil(self.total / self.per_page))
        in_range = self.page <= self.total_pages
        self.next_page = self.page + 1 if in_range and self.page < self.total_pages else None
        self.prev_page = self.page - 1 if in_range and self.page > 1 else None
        if not in_range:
            return []
        return list(queryset[offset : offset + self.per_page])

    def _page_without_count(self, queryset: QuerySet, offset: int) -> list:
        """Kaminari's ``PaginatableWithoutCount``: one row more than the page says whether
        there is a next; an empty page has neither a next nor a previous."""
        self.total = self.total_pages = None
        rows = list(queryset[offset : offset + self.per_page + 1])
        page, more = rows[: self.per_page], len(rows) > self.per_page
        self.next_page = self.page + 1 if more else None
        self.prev_page = self.page - 1 if page and self.page > 1 else None
        return page

    def get_paginated_response(self, data) -> Response:
        return Response(data, headers=self.headers())

    def headers(self) -> dict[str, str]:
        headers = {
            "X-Per-Page": str(self.per_page),
            "X-Page": str(self.page),
            "X-Next-Page": str(self.next_page or ""),
            "X-Prev-Page": str(self.prev_page or ""),
            "Link": self.link_header(),
        }
        if self.total is not None:
            headers |= {"X-Total": str(self.total), "X-Total-Pages": str(self.total_pages)}
        return headers

    def link_header(self) -> str:
        links = []
        if self.prev_page:
            links.append(f'<{self._page_url(self.prev_page)}>; rel="prev"')
        if self.next_page:
            links.append(f'<{self._page_url(self.next_page)}>; rel="next"')
        links.append(f'<{self._page_url(1)}>; rel="first"')
        if self.total_pages is not None:
            links.append(f'<{self._page_url(self.total_pages)}>; rel="last"')
        return ", ".join(links)

    def _page_url(self, page: int) -> str:
        params = {
            key: self.request.query_params.getlist(key)
            for key in self.request.query_params
            # Credentials a client put in the query string stay out of the links we hand back.
            if not is_secret_parameter(key)
        }
        params["page"] = [str(page)]
        params["per_page"] = [str(self.per_page)]
        # Rails' Hash#to_query sorts the keys; links then look the same as GitLab's.
        query = urlencode(sorted(params.items()), doseq=True)
        return self.request.build_absolute_uri(f"{self._raw_path()}?{query}")

    def _raw_path(self) -> str:
        """The path as the client sent it, so ``acme%2Fweb`` stays encoded when we know it."""
        meta = self.request.META
        raw = meta.get("RAW_URI") or meta.get("REQUEST_URI")
        if raw and raw.startswith("/"):
            return raw.split("?", 1)[0]
        return escape_uri_path(self.request.path)

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return schema  # GitLab's lists are bare arrays; the paging is in the headers

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": "page",
                "required": False,
                "in": "query",
                "description": "Page number (default: 1).",
                "schema": {"type": "integer"},
            },
            {
                "name": "per_page",
                "required": False,
                "in": "query",
                "description": f"Items per page (default: {DEFAULT_PER_PAGE}, "
                f"maximum: {MAX_PER_PAGE}).",
                "schema": {"type": "integer"},
            },
        ]


def pagination_header_parameters() -> list[OpenApiParameter]:
    """The response headers of a paginated list, for the OpenAPI schema."""
    return [
        OpenApiParameter(
            name, OpenApiTypes.STR, OpenApiParameter.HEADER, description=text, response=True
        )
        for name, text in PAGINATION_HEADERS.items()
    ]
