"""Entities and endpoint parameters build their fields once per class
(pipelines/api/gitlab/rendering.py), and each use still gives its own answer."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from pipelines.api.gitlab import entities
from pipelines.api.gitlab.params import (
    CommitStatusCreateParams,
    PipelineCreateParams,
    validate_params,
)
from pipelines.errors import InvalidParameter
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_an_entity_builds_its_fields_once_and_renders_each_object(monkeypatch):
    alice = UserFactory(username="alice")
    jobs = [JobFactory(name="build", user=alice), JobFactory(name="lint", user=None)]
    assert entities.CommitStatusSerializer(jobs[0]).data["id"] == jobs[0].pk  # fields built
    built = []
    get_fields = serializers.ModelSerializer.get_fields
    monkeypatch.setattr(
        serializers.ModelSerializer,
        "get_fields",
        lambda self: built.append(type(self).__name__) or get_fields(self),
    )
    first, second = (entities.CommitStatusSerializer(job).data for job in jobs)
    listed = entities.CommitStatusSerializer(jobs, many=True).data
    assert built == []
    assert (first["name"], first["author"]["username"]) == ("build", "alice")
    assert (second["name"], second["author"]) == ("lint", None)
    assert [job["name"] for job in listed] == ["build", "lint"]


def test_parameters_checked_with_shared_fields_keep_each_checks_findings():
    good = {"state": "running", "name": "build"}
    assert validate_params(CommitStatusCreateParams, good)["state"] == "running"
    with pytest.raises(InvalidParameter, match="state"):
        validate_params(CommitStatusCreateParams, {"state": "sideways"})
    assert validate_params(CommitStatusCreateParams, {"state": "success"})["state"] == "success"
    assert CommitStatusCreateParams().fields is CommitStatusCreateParams().fields
    # Nested parameters (a list of variables) as well.
    variables = [{"key": "A", "value": "1"}]
    checked = validate_params(PipelineCreateParams, {"ref": "main", "variables": variables})
    assert [dict(v)["key"] for v in checked["variables"]] == ["A"]
    with pytest.raises(InvalidParameter, match="variables"):
        validate_params(PipelineCreateParams, {"ref": "main", "variables": [{"value": "1"}]})
    again = validate_params(PipelineCreateParams, {"ref": "main", "variables": variables})
    assert [dict(v)["key"] for v in again["variables"]] == ["A"]
