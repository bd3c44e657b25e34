"""The parameters each v4 endpoint takes, and how they are read, as GitLab's Grape reads them.

Query strings and form bodies become plain values, lists (``scope[]``) and GitLab's arrays
of hashes (``variables[][key]``); JSON bodies are taken as they are, the body winning over
the query string. Each endpoint's serializer validates them, and every problem is worded as
Grape words it (``ref is missing``, ``status does not have a valid value``) in one
``InvalidParameter``.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from rest_framework import serializers

from pipelines.api.gitlab.rendering import FieldsBuiltOnce
from pipelines.api.parsing import MAX_ID, validation_problems
from pipelines.auth import TOKEN_QUERY_PARAMETERS
from pipelines.errors import InvalidParameter
from pipelines.models import Pipeline, Project, Status
from pipelines.services import COMMIT_STATUS_STATES

# Explicit indexes are ASCII and short: ``int()`` refuses thousands of digits with a crash.
_ARRAY_OF_HASHES_KEY = re.compile(r"^(?P<name>\w+)\[(?P<index>[0-9]{0,9})\]\[(?P<field>\w+)\]$")


def plain_params(data) -> dict[str, Any]:
    """A QueryDict (query string or form body) as Grape sees it.

    ``scope[]=a&scope[]=b`` is a list; ``variables[][key]=K&variables[][value]=V`` (or with
    explicit indexes) is GitLab's "array of hashes"; any other key keeps its last value.
    """
    result: dict[str, Any] = {}
    hashes: dict[str, dict[int, dict[str, str]]] = {}
    for key, values in data.lists():
        if match := _ARRAY_OF_HASHES_KEY.match(key):
            rows = hashes.setdefault(match["name"], {})
            if match["index"]:
                rows.setdefault(int(match["index"]), {})[match["field"]] = values[-1]
            else:
                for position, value in enumerate(values):
                    rows.setdefault(position, {})[match["field"]] = value
        elif key.endswith("[]"):
            result[key[:-2]] = values
        else:
            result[key] = values[-1]
    for name, rows in hashes.items():
        result[name] = [rows[index] for index in sorted(rows)]
    return result


def _grape_name(path: tuple[str | int, ...]) -> str:
    """A parameter's name as Grape says it: ``variables[0][key]``."""
    return "".join(
        str(part) if position == 0 else f"[{part}]" for position, part in enumerate(path)
    )


def _describe_problem(name: str, detail: serializers.ErrorDetail, field=None) -> str:
    """One parameter problem in Grape's words (``ref is missing``)."""
    code = getattr(detail, "code", None)
    if code in ("required", "null"):
        return f"{name} is missing"
    if code == "blank":
        return f"{name} is empty"
    if code == "invalid_choice":
        choices = getattr(field, "choices", None)
        allowed = f" (one of: {', '.join(map(str, choices))})" if choices else ""
        return f"{name} does not have a valid value{allowed}"
    if code == "explained":
        return str(detail)
    if code == "invalid":
        return f"{name} is invalid"
    return f"{name} is invalid: {detail}"


# Read by the views themselves (pagination) or by authentication, on every endpoint.
SHARED_PARAMETERS = frozenset({"page", "per_page", *TOKEN_QUERY_PARAMETERS})


class StrictParams(FieldsBuiltOnce, serializers.Serializer):
    """Parameters of an endpoint where an unknown one would be dropped at the client's cost.

    Grape ignores what a route does not declare; here a filter this API does not know is
    refused with a 400 naming it, so ``list(created_before=...)`` can never come back as
    the whole list, nor a write happen without part of what was asked.
    """


def unknown_parameters(serializer_class: type[serializers.Serializer], data: dict) -> list[str]:
    known = known_parameters(serializer_class)
    return sorted(key for key in data if key not in known)


@functools.cache
def known_parameters(serializer_class: type[serializers.Serializer]) -> frozenset[str]:
    """The names an endpoint takes: its fields (built once per class, not per request) and
    the ones every endpoint takes."""
    return frozenset(serializer_class().fields) | SHARED_PARAMETERS


def validate_params(serializer_class: type[serializers.Serializer], data: dict) -> dict:
    """Validated parameters, or an ``InvalidParameter`` naming every bad one."""
    if issubclass(serializer_class, StrictParams) and (
        unknown := unknown_parameters(serializer_class, data)
    ):
        raise InvalidParameter(
            ", ".join(f"{name} is not a parameter of this endpoint" for name in unknown)
        )
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        problems = validation_problems(serializer.errors, serializer)
        raise InvalidParameter(
            ", ".join(
                _describe_problem(_grape_name(path), detail, field)
                for path, detail, field in problems
            )
        )
    return dict(serializer.validated_data)


def check_path_value(name: str, value: str, max_length: int | None = None) -> str:
    if "\x00" in value:
        raise InvalidParameter(f"{name} is invalid: it contains a NUL character")
    if max_length is not None and len(value) > max_length:
        raise InvalidParameter(f"{name} is invalid: at most {max_length} characters")
    return value


# --- Parameters of each endpoint ---------------------------------------------------------

PIPELINE_ORDER_FIELDS = ("id", "status", "ref", "updated_at", "user_id")
COMMIT_STATUS_ORDER_FIELDS = ("id", "pipeline_id")
# GitLab's whole vocabularies (``Ci::HasStatus::AVAILABLE_STATUSES``, ``Ci::Pipeline.sources``):
# a filter with a value no row here can have is an empty list, not a 400.
GITLAB_STATUSES = (*Status.values, "waiting_for_callback")
GITLAB_PIPELINE_SOURCES = (
    *Pipeline.Source.values,
    "webide",
    "ondemand_dast_scan",
    "ondemand_dast_validation",
    "security_orchestration_policy",
    "container_registry_push",
    "duo_workflow",
    "pipeline_execution_policy_schedule",
)
PIPELINE_SCOPES = ("running", "pending", "finished", "branches", "tags")
PROJECT_ORDER_FIELDS = ("id", "name", "path", "created_at", "updated_at", "last_activity_at")
# GitLab's project paths: letters, digits, '_', '-' and '.', not starting with '-' or '.'.
PROJECT_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class FiniteFloatField(serializers.FloatField):
    """A float that is a real number: no NaN or infinity from a query string."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class ScopeField(serializers.ListField):
    """``scope`` or ``scope[]``: one value or several, as GitLab accepts it."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [data]
        return super().to_internal_value(data)


class ProjectListParams(serializers.Serializer):
    search = serializers.CharField(required=False, help_text="Part of the name or path.")
    visibility = serializers.ChoiceField(choices=Project.Visibility.values, required=False)
    order_by = serializers.ChoiceField(
        choices=PROJECT_ORDER_FIELDS, required=False, default="created_at"
    )
    sort = serializers.ChoiceField(choices=("asc", "desc"), required=False, default="desc")


class ProjectCreateParams(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=255)
    path = serializers.CharField(required=False, max_length=255)
    namespace = serializers.CharField(
        required=False, max_length=255, help_text="Group path (default: root)."
    )
    namespace_id = serializers.CharField(
        required=False, max_length=255, help_text="Same as namespace (a path here)."
    )
    description = serializers.CharField(required=False, allow_blank=True)
    default_branch = serializers.CharField(required=False, max_length=255)
    visibility = serializers.ChoiceField(choices=Project.Visibility.values, required=False)

    def validate_path(self, value: str) -> str:
        if not PROJECT_PATH_RE.match(value):
            raise serializers.ValidationError(
                "path can contain only letters, digits, '_', '-' and '.', "
                "and cannot start with '-' or '.'",
                code="explained",
            )
        return value

    def validate_namespace(self, value: str) -> str:
        return _group_path(value, "namespace")

    def validate_namespace_id(self, value: str) -> str:
        return _group_path(value, "namespace_id")


def _group_path(value: str, name: str) -> str:
    """A group path (``acme/platform``): project paths joined by '/', which URLs keep as is."""
    groups = value.strip("/").split("/")
    if not all(PROJECT_PATH_RE.match(group) for group in groups):
        raise serializers.ValidationError(
            f"{name} is a group path: groups of letters, digits, '_', '-' and '.' joined by '/',"
            " none starting with '-' or '.'",
            code="explained",
        )
    return "/".join(groups)


class CommitStatusCreateParams(StrictParams):
    state = serializers.ChoiceField(choices=COMMIT_STATUS_STATES)
    ref = serializers.CharField(required=False, max_length=255)
    name = serializers.CharField(required=False, max_length=255)
    context = serializers.CharField(required=False, max_length=255, help_text="Alias of name.")
    stage = serializers.CharField(
        required=False, max_length=255, help_text="Pipehook extension: the job's stage."
    )
    target_url = serializers.URLField(required=False, allow_blank=True, max_length=2000)
    description = serializers.CharField(required=False, allow_blank=True)
    coverage = FiniteFloatField(required=False)
    pipeline_id = serializers.IntegerField(required=False, min_value=1)


class CommitStatusListParams(StrictParams):
    ref = serializers.CharField(required=False)
    stage = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    pipeline_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    all = serializers.BooleanField(
        required=False, default=False, help_text="Include retried statuses."
    )
    order_by = serializers.ChoiceField(
        choices=COMMIT_STATUS_ORDER_FIELDS, required=False, default="id"
    )
    sort = serializers.ChoiceField(choices=("asc", "desc"), required=False, default="asc")


class PipelineListParams(StrictParams):
    scope = serializers.ChoiceField(choices=PIPELINE_SCOPES, required=False)
    status = serializers.ChoiceField(choices=GITLAB_STATUSES, required=False)
    source = serializers.ChoiceField(choices=GITLAB_PIPELINE_SOURCES, required=False)
    ref = serializers.CharField(required=False)
    sha = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    username = serializers.CharField(required=False)
    yaml_errors = serializers.BooleanField(required=False, allow_null=True, default=None)
    updated_after = serializers.DateTimeField(required=False)
    updated_before = serializers.DateTimeField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    order_by = serializers.ChoiceField(choices=PIPELINE_ORDER_FIELDS, required=False, default="id")
    sort = serializers.ChoiceField(choices=("asc", "desc"), required=False, default="desc")


class PipelineVariableParam(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.CharField(allow_blank=True)
    variable_type = serializers.ChoiceField(
        choices=("env_var", "file"), required=False, default="env_var"
    )


class PipelineCreateParams(StrictParams):
    ref = serializers.CharField(max_length=255)
    sha = serializers.CharField(
        required=False,
        max_length=64,
        help_text=(
            "Pipehook extension: the commit to run. Without it, the commit of the newest "
            "pipeline on `ref` is used; with neither, the answer is 400 Reference not found."
        ),
    )
    variables = serializers.ListField(
        child=PipelineVariableParam(),
        required=False,
        help_text='[{"key": "DEPLOY", "value": "true", "variable_type": "env_var"}]',
    )


class JobsParams(StrictParams):
    """``GET /projects/:id/jobs`` and a pipeline's bridges: ``scope`` only."""

    scope = ScopeField(
        child=serializers.ChoiceField(choices=GITLAB_STATUSES),
        required=False,
        help_text="One status or several (scope[]=pending&scope[]=running).",
    )


class PipelineJobsParams(StrictParams):
    scope = ScopeField(
        child=serializers.ChoiceField(choices=GITLAB_STATUSES),
        required=False,
        help_text="One status or several (scope[]=pending&scope[]=running).",
    )
    include_retried = serializers.BooleanField(required=False, default=False)


class PipelineLatestParams(StrictParams):
    ref = serializers.CharField(required=False, help_text="Default: the default branch.")
