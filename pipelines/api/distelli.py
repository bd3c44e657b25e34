"""Puppet Pipelines (Distelli) events API, mounted at ``/distelli/``.

A build system that reports to Distelli reports here by changing only its base URL
(``https://api.distelli.com`` becomes ``<pipehook>/distelli``) and its ``apiToken``:

- ``:username`` is the token owner's username and ``:app_name`` a project's path;
- ``PUT .../events/buildEvent`` records a build and shows it as a pipeline (one ``build``
  job carrying its status); ``POST .../events/:eventId`` updates it until it reaches a
  terminal status, after which it is immutable;
- ``PUT .../events/pushEvent`` and ``.../pullRequestEvent`` record what may trigger builds,
  linked through ``parent_event_id``;
- ``GET .../events`` lists every event with Distelli's filters and marker pagination.

Field by field, and every leniency with its reason: ``docs/dialects.md``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import re_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.response import Response

from pipelines import reports
from pipelines.api.dialect import (
    DialectView,
    Text,
    optional_text,
    refusals,
    token_from_request,
    validated,
)
from pipelines.api.parsing import MAX_ID, parse_id
from pipelines.api.times import gitlab_time
from pipelines.auth import READ, WRITE, check_access, grants_of
from pipelines.errors import Conflict, Forbidden, InvalidInput, NotFound
from pipelines.models import AccessToken, DistelliEvent, Project

SCHEMA_TAG = "Puppet Pipelines (Distelli) events"
HOW_TO_AUTHENTICATE = "add ?apiToken=<token> to the URL"

BuildStatus = DistelliEvent.BuildStatus
EventType = DistelliEvent.Type

# filter_event_type values as Distelli documents them. Deploy, release and docker image
# events come from Distelli's own deployments, which this service has none of.
EVENT_TYPE_FILTERS: dict[str, str | None] = {
    "build": EventType.BUILD,
    "push": EventType.PUSH,
    "pullrequest": EventType.PULL_REQUEST,
    "deploy": None,
    "release": None,
    "dockerimage": None,
}
FILTERS = {
    "branch": ("Branch", ["filter_branch"]),
    "env": ("Env", ["filter_env"]),
    "eventtype": ("EventType", ["filter_event_type"]),
    "branchandeventtype": ("BranchAndEventType", ["filter_branch", "filter_event_type"]),
    "envandbranch": ("EnvAndBranch", ["filter_env", "filter_branch"]),
}
DEFAULT_MAX_RESULTS = 10
MAX_RESULTS_LIMIT = 100

# The keys each event type shows, in Distelli's order.
REPO_FIELDS = [
    "author_name",
    "author_username",
    "branch",
    "commit_id",
    "commit_msg",
    "commit_url",
    "repo_name",
    "repo_owner",
    "repo_provider",
    "repo_url",
]
BUILD_FIELDS = sorted(
    REPO_FIELDS
    + [
        "auto_build",
        "build_end",
        "build_id",
        "build_provider",
        "build_start",
        "build_status",
        "build_url",
        "parent_event_id",
        "release_version",
    ]
)


# --- Input ------------------------------------------------------------------------------------


class StrictBoolean(serializers.BooleanField):
    """``true`` or ``false``, as the documentation says; not "yes", 1 or "true"."""

    default_error_messages = {"invalid": "must be true or false"}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@extend_schema_field(OpenApiTypes.STR)
class EventId(serializers.Field):
    """An event id: a string of digits as the API returns it, or the number itself."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, int) and not isinstance(data, bool) and 0 <= data <= MAX_ID:
            return data
        event_id = parse_id(data.strip()) if isinstance(data, str) else None
        if event_id is None:
            raise serializers.ValidationError("must be an event id returned by this API")
        return event_id


class RepoEventInput(serializers.Serializer):
    repo_url = optional_text(2000)
    commit_url = optional_text(2000)
    repo_owner = optional_text()
    repo_name = optional_text()
    repo_provider = optional_text(64)
    author_username = optional_text()
    author_name = optional_text()
    commit_msg = Text(required=False, allow_null=True, allow_blank=True)
    commit_id = optional_text(64)
    branch = optional_text()


class BuildEventInput(RepoEventInput):
    build_status = optional_text(32)
    build_start = serializers.DateTimeField(required=False, allow_null=True)
    build_end = serializers.DateTimeField(required=False, allow_null=True)
    auto_build = StrictBoolean(required=False, allow_null=True)
    build_id = optional_text()
    build_provider = optional_text()
    build_url = optional_text(2000)
    parent_event_id = EventId(required=False, allow_null=True)


class BuildUpdateInput(serializers.Serializer):
    build_status = optional_text(32)
    build_end = serializers.DateTimeField(required=False, allow_null=True)
    release_version = optional_text()


# --- Output -----------------------------------------------------------------------------------


def render_event(event: DistelliEvent) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "app_name": event.project.path,
        "event_id": event.pk,
        "event_time": gitlab_time(event.created_at),
        "event_type": event.event_type,
    }
    fields = BUILD_FIELDS if event.event_type == EventType.BUILD else REPO_FIELDS
    for field in fields:
        if field in ("build_start", "build_end"):
            rendered[field] = gitlab_time(getattr(event, field))
        elif field == "parent_event_id":
            rendered[field] = str(event.parent_id) if event.parent_id else None
        else:
            rendered[field] = getattr(event, field)
    return rendered


def _shown(help_text: str = "") -> serializers.CharField:
    return serializers.CharField(allow_null=True, help_text=help_text or "Null when not sent.")


class EventOutput(serializers.Serializer):
    """An event as ``render_event`` shows it; build events also carry the build fields."""

    app_name = serializers.CharField()
    event_id = serializers.IntegerField()
    event_time = serializers.CharField(help_text="2016-08-30T22:31:03.723Z")
    event_type = serializers.ChoiceField(choices=EventType.choices)
    author_name = _shown()
    author_username = _shown()
    branch = _shown()
    commit_id = _shown()
    commit_msg = _shown()
    commit_url = _shown()
    repo_name = _shown()
    repo_owner = _shown()
    repo_provider = _shown()
    repo_url = _shown()
    auto_build = serializers.BooleanField(
        required=False, allow_null=True, help_text="Build events only."
    )
    build_end = _shown("Build events only.")
    build_id = _shown("Build events only.")
    build_provider = _shown("Build events only.")
    build_start = _shown("Build events only.")
    build_status = serializers.ChoiceField(
        choices=BuildStatus.choices, required=False, allow_null=True, help_text="Build events only."
    )
    build_url = _shown("Build events only.")
    parent_event_id = _shown("Build events only: the push or pull request that triggered it.")
    release_version = _shown("Build events only.")


class EventCreated(serializers.Serializer):
    event_id = serializers.CharField(help_text="The new event's id, as a string of digits.")


class EventUpdated(serializers.Serializer):
    event = EventOutput()


class EventPage(serializers.Serializer):
    app_name = serializers.CharField()
    events = EventOutput(many=True)
    marker = serializers.CharField(
        required=False, help_text="Present when more events follow: pass it as marker."
    )


API_TOKEN = OpenApiParameter(
    "apiToken", OpenApiTypes.STR, OpenApiParameter.QUERY, description="An access token."
)
LIST_PARAMETERS = [
    OpenApiParameter(
        "filter_name",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        enum=[name for name, _ in FILTERS.values()],
    ),
    OpenApiParameter("filter_branch", OpenApiTypes.STR, OpenApiParameter.QUERY),
    OpenApiParameter("filter_env", OpenApiTypes.STR, OpenApiParameter.QUERY),
    OpenApiParameter(
        "filter_event_type",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="Build, Push, Pullrequest (Deploy, Release and Dockerimage match none).",
    ),
    OpenApiParameter(
        "max_results",
        OpenApiTypes.INT,
        OpenApiParameter.QUERY,
        description=f"Default {DEFAULT_MAX_RESULTS}, at most {MAX_RESULTS_LIMIT}.",
    ),
    OpenApiParameter("order", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["desc", "asc"]),
    OpenApiParameter(
        "marker",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="The marker of the previous page.",
    ),
]
REFUSALS = {
    400: "A mistyped field, filter or marker",
    401: "No apiToken, or one that is unknown, revoked or expired",
    403: "The token belongs to another user, or lacks the scope, permission or project",
    404: "Unknown app or event",
    409: "The app name matches several projects the token reaches",
}


# --- Views ------------------------------------------------------------------------------------


def resolve_app(token: AccessToken, username: str, app_name: str, action: str) -> Project:
    """The project ``app_name`` names, once the URL's user and the token agree."""
    owner = token.user.get_username()
    if username != owner:
        raise Forbidden(
            f"this apiToken belongs to user {owner!r}, not {username!r}: use /{owner}/apps/...",
        )
    # Projects the token holds nothing on (or is not limited to) are not there for it, so
    # neither a 404 nor the list of namesakes tells it which names exist.
    grants = grants_of(token)
    candidates = [p for p in Project.objects.filter(path=app_name) if grants.sees(p)]
    if len(candidates) > 1:
        # Paths repeat across namespaces: the user's own namespace first.
        candidates = [p for p in candidates if p.namespace == username] or candidates
    if not candidates:
        raise NotFound(
            f"app {app_name!r} not found: app_name is the path of a project"
            " (example-node for acme/example-node)",
        )
    if len(candidates) > 1:
        names = ", ".join(p.path_with_namespace for p in candidates)
        raise Conflict(
            f"app name {app_name!r} matches several projects ({names}): use a token limited"
            " to one of them",
        )
    project = candidates[0]
    check_access(token, token.user, action, project)
    return project


class DistelliView(DialectView):
    def app(self, request, username: str, app_name: str, action: str) -> tuple:
        token = token_from_request(request, how=HOW_TO_AUTHENTICATE)
        return token, resolve_app(token, username, app_name, action)


class EventsView(DistelliView):
    """``GET .../events``: ListEvents with filters, ``max_results``, ``order`` and ``marker``."""

    @extend_schema(
        tags=[SCHEMA_TAG],
        parameters=[API_TOKEN, *LIST_PARAMETERS],
        responses={200: OpenApiResponse(EventPage, "A page of events"), **refusals(REFUSALS)},
    )
    def get(self, request, username: str, app_name: str):
        _, project = self.app(request, username, app_name, READ)
        params = request.query_params
        events = filter_events(project.distelli_events.select_related("project"), params)
        max_results = _max_results(params.get("max_results"))
        order = (params.get("order") or "desc").strip().lower()
        if order not in ("asc", "desc"):
            raise InvalidInput(f"order {params['order']!r} is not asc or desc")
        marker = params.get("marker")
        if marker:
            after = parse_id(marker.strip())
            if after is None:
                raise InvalidInput(f"marker {marker!r} is not a marker this API returned")
            events = events.filter(pk__gt=after) if order == "asc" else events.filter(pk__lt=after)
        events = events.order_by("id" if order == "asc" else "-id")
        page = list(events[: max_results + 1])
        body: dict[str, Any] = {
            "app_name": project.path,
            "events": [render_event(e) for e in page[:max_results]],
        }
        if len(page) > max_results:
            body["marker"] = str(page[max_results - 1].pk)
        return Response(body)


def _max_results(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_MAX_RESULTS
    number = parse_id(value.strip())
    if number is None or number < 1:
        raise InvalidInput(f"max_results {value!r} is not a positive integer")
    return min(number, MAX_RESULTS_LIMIT)


def filter_events(events: QuerySet, params) -> QuerySet:
    filter_name = params.get("filter_name")
    if not filter_name:
        return events
    known = FILTERS.get(filter_name.strip().lower())
    if known is None:
        names = ", ".join(name for name, _ in FILTERS.values())
        raise InvalidInput(f"filter_name {filter_name!r} is not one of {names}")
    name, needed = known
    missing = [param for param in needed if not params.get(param)]
    if missing:
        raise InvalidInput(f"filter_name={name} needs {' and '.join(missing)}")
    if "filter_branch" in needed:
        events = events.filter(branch=params["filter_branch"])
    if "filter_env" in needed:
        events = events.filter(env_name=params["filter_env"])
    if "filter_event_type" in needed:
        wanted = params["filter_event_type"]
        key = wanted.strip().lower().replace("_", "")
        if key not in EVENT_TYPE_FILTERS:
            raise InvalidInput(
                f"filter_event_type {wanted!r} is not one of Build, Deploy, Dockerimage,"
                " Pullrequest, Push, Release",
            )
        event_type = EVENT_TYPE_FILTERS[key]
        events = events.filter(event_type=event_type) if event_type else events.none()
    return events


class EventView(DistelliView):
    """``PUT .../events/{buildEvent,pushEvent,pullRequestEvent}`` and ``POST .../events/:id``."""

    KINDS = {
        "buildEvent": EventType.BUILD,
        "pushEvent": EventType.PUSH,
        "pullRequestEvent": EventType.PULL_REQUEST,
    }

    @extend_schema(
        tags=[SCHEMA_TAG],
        parameters=[API_TOKEN],
        request=BuildEventInput,
        responses={
            200: OpenApiResponse(EventCreated, "The event is recorded"),
            **refusals(REFUSALS),
        },
    )
    def put(self, request, username: str, app_name: str, name: str):
        token, project = self.app(request, username, app_name, WRITE)
        kind = self.KINDS.get(name)
        if kind is None:
            raise NotFound(
                f"events/{name} is not an event kind:"
                " use buildEvent, pushEvent or pullRequestEvent",
            )
        if kind == EventType.BUILD:
            data = validated(BuildEventInput(data=self.json_object(request)))
            event = reports.record_build_event(project, user=token.user, **data)
        else:
            data = validated(RepoEventInput(data=self.json_object(request)))
            event = reports.record_repo_event(project, kind, **data)
        return Response({"event_id": str(event.pk)})

    @extend_schema(
        tags=[SCHEMA_TAG],
        parameters=[API_TOKEN],
        request=BuildUpdateInput,
        responses={
            200: OpenApiResponse(EventUpdated, "The build event as it now is"),
            **refusals(
                {**REFUSALS, 409: "The build is terminal (immutable), or the app name is ambiguous"}
            ),
        },
    )
    def post(self, request, username: str, app_name: str, name: str):
        _, project = self.app(request, username, app_name, WRITE)
        event_id = parse_id(name)
        if event_id is None:
            raise NotFound(f"event {name!r} not found in app {app_name!r}")
        data = validated(BuildUpdateInput(data=self.json_object(request)))
        event = reports.update_build_event(project, event_id, **data)
        return Response({"event": render_event(event)})


_APP = r"^(?P<username>[^/]+)/apps/(?P<app_name>[^/]+)/events"
urlpatterns = [
    re_path(_APP + r"$", EventsView.as_view(), name="distelli-events"),
    re_path(_APP + r"/(?P<name>[^/]+)$", EventView.as_view(), name="distelli-event"),
]
