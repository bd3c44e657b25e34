"""Prepared queries (pipelines.prepared) give what their QuerySets give, build their SQL once,
and fall back to the ORM when a run's values cannot be told apart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.db.models import F
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError

from hooks.receivers import CI_HOOKS_OF_PROJECT
from pipelines.api.gitlab.views import PROJECT_BY_ID
from pipelines.command_memory import LATEST_JOBS_WITH_USERS
from pipelines.commit_statuses import (
    LATEST_OF_COMMIT,
    LATEST_OF_COMMIT_ON_REF,
    PIPELINE_BY_ID,
    _locked_pipelines,
)
from pipelines.models import Job, Pipeline, Project
from pipelines.prepared import PreparedQuery, save_existing
from pipelines.services import HIGHEST_IID, NEWEST_OF_COMMIT, PROJECT_FOR_UPDATE
from tests.factories import (
    HookFactory,
    JobFactory,
    PipelineFactory,
    ProjectFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def fields_of(obj, related=("user",)) -> dict:
    """Every concrete field's value, and those of the objects select_related brought."""
    values = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
    for name in related:
        if name in obj._state.fields_cache:
            value = obj._state.fields_cache[name]
            values[name] = fields_of(value, ()) if value is not None else None
        else:
            values[name] = "not loaded"
    return values


@pytest.fixture
def two_projects():
    alice = UserFactory(username="alice", first_name="Alice", last_name="A")
    projects = [ProjectFactory(), ProjectFactory()]
    pipelines = []
    for project in projects:
        for ref in ("main", "topic"):
            for sha in ("a" * 40, "b" * 40):
                pipelines.append(PipelineFactory(project=project, ref=ref, sha=sha, user=alice))
        pipelines.append(PipelineFactory(project=project, ref="main", sha="c" * 40, user=None))
    for pipeline in pipelines:
        JobFactory(pipeline=pipeline, name="build", stage_idx=1, user=alice)
        JobFactory(pipeline=pipeline, name="lint", stage_idx=0, user=None)
        JobFactory(pipeline=pipeline, name="build", stage_idx=1, retried=True)
    HookFactory(project=projects[0], pipeline_events=True)
    HookFactory(project=projects[0], pipeline_events=False, job_events=True)
    HookFactory(project=projects[0], pipeline_events=False, job_events=False)
    HookFactory(project=projects[1], pipeline_events=True)
    return projects, pipelines


def test_each_prepared_query_gives_what_its_queryset_gives(two_projects):
    projects, pipelines = two_projects
    cases = []
    for project in projects:
        for sha in ("a" * 40, "b" * 40, "c" * 40, "d" * 40):
            cases.append((LATEST_OF_COMMIT, (project.pk, sha), {"sha": sha}))
            for ref in ("main", "topic", "gone"):
                cases.append(
                    (LATEST_OF_COMMIT_ON_REF, (project.pk, sha, ref), {"sha": sha, "ref": ref})
                )
        for pipeline in pipelines:
            cases.append((PIPELINE_BY_ID, (project.pk, pipeline.pk), {"pk": pipeline.pk}))
    with transaction.atomic():
        for prepared, values, lookups in cases:
            expected = list(_locked_pipelines(values[0]).filter(**lookups)[:1])
            assert [fields_of(p) for p in prepared(*values)] == [fields_of(p) for p in expected]
    # Each was built once and kept (not run through the ORM each time).
    assert all(prepared._compiled for prepared in (LATEST_OF_COMMIT, LATEST_OF_COMMIT_ON_REF))
    assert PIPELINE_BY_ID._compiled
    for pipeline in pipelines:
        expected = pipeline.latest_jobs().select_related("user")
        got = LATEST_JOBS_WITH_USERS(pipeline.pk)
        assert [fields_of(j) for j in got] == [fields_of(j) for j in expected]
        assert [j.name for j in got] == ["lint", "build"]
        # A command's pipeline keeps them, each pointing at it without a read.
        pipeline.load_latest_jobs()
        assert all(job.pipeline is pipeline for job in pipeline.loaded_latest_jobs())
    for project in projects:
        assert [fields_of(p, ()) for p in PROJECT_BY_ID(project.pk)] == [
            fields_of(Project.objects.get(pk=project.pk), ())
        ]
        assert PROJECT_BY_ID(project.pk + 1000) == []
        expected = project.hooks.exclude(pipeline_events=False, job_events=False).order_by("pk")
        got = sorted(CI_HOOKS_OF_PROJECT(project.pk), key=lambda hook: hook.pk)
        assert [fields_of(h, ()) for h in got] == [fields_of(h, ()) for h in expected]
        assert len(got) == (2 if project == projects[0] else 1)
    assert LATEST_JOBS_WITH_USERS._compiled
    assert CI_HOOKS_OF_PROJECT._compiled
    assert PROJECT_BY_ID._compiled


def test_the_reads_of_a_creation_give_what_their_querysets_give(two_projects):
    projects, pipelines = two_projects
    empty = ProjectFactory()
    with transaction.atomic():
        for project in (*projects, empty):
            assert [p.pk for p in PROJECT_FOR_UPDATE(project.pk)] == [project.pk]
            highest = HIGHEST_IID(project.pk)
            expected = project.pipelines.order_by("-iid").values_list("iid", flat=True)[:1]
            assert [p.iid for p in highest] == list(expected)
            for sha in ("a" * 40, "c" * 40, "d" * 40):
                newest = project.pipelines.filter(sha=sha).order_by("-id").first()
                got = NEWEST_OF_COMMIT(project.pk, sha)
                assert [p.pk for p in got] == ([newest.pk] if newest else [])
                if newest:
                    assert got[0].commit_title == newest.commit_title
                    assert got[0].project_id == project.pk  # a deferred field, read when asked
        assert PROJECT_FOR_UPDATE(empty.pk + 1000) == []
    assert HIGHEST_IID(empty.pk) == []
    assert all(q._compiled for q in (PROJECT_FOR_UPDATE, HIGHEST_IID, NEWEST_OF_COMMIT))


def test_its_sql_is_built_once_and_each_run_has_its_own_values(two_projects, monkeypatch):
    projects, pipelines = two_projects
    prepared = PreparedQuery(lambda pipeline_id: Job.objects.filter(pipeline_id=pipeline_id))
    prepared(pipelines[0].pk)  # built here
    built = []
    as_sql = SQLCompiler.as_sql
    monkeypatch.setattr(
        SQLCompiler, "as_sql", lambda self, *a, **k: built.append(1) or as_sql(self, *a, **k)
    )
    for pipeline in pipelines:
        assert {job.pipeline_id for job in prepared(pipeline.pk)} == {pipeline.pk}
    assert built == []


def test_values_it_cannot_tell_apart_go_through_the_orm_until_it_can(two_projects):
    _, pipelines = two_projects
    pipeline = pipelines[-1]  # its id is above the other jobs' stage indexes (0 and 1)
    JobFactory(pipeline=pipeline, name="odd", stage_idx=pipeline.pk)
    prepared = PreparedQuery(
        lambda pipeline_id, stage_idx: Job.objects.filter(
            pipeline_id=pipeline_id, stage_idx=stage_idx
        )
    )
    # Equal values: either parameter could be either one, so nothing is kept.
    assert [job.name for job in prepared(pipeline.pk, pipeline.pk)] == ["odd"]
    assert prepared._compiled == {}
    assert [job.name for job in prepared(pipeline.pk, 0)] == ["lint"]
    assert prepared._compiled != {}
    assert [job.name for job in prepared(pipeline.pk, pipeline.pk)] == ["odd"]
    # Values other than int and str (a bool here) are never guessed at.
    flags = PreparedQuery(lambda flag: Job.objects.filter(retried=flag))
    assert len(flags(True)) == len(pipelines)
    assert flags._compiled == {}


AT = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)


def row_of(model, pk) -> dict:
    return model.objects.filter(pk=pk).values().get()


def test_save_existing_writes_what_save_writes(two_projects):
    _, pipelines = two_projects
    by_save, by_update = pipelines[0], pipelines[1]
    for pipeline in (by_save, by_update):
        pipeline.status = "running"
        pipeline.name = "renamed"
        pipeline.user = None
        pipeline.created_at = pipeline.updated_at = pipeline.started_at = AT
        pipeline.variables = [{"key": "A", "value": "1", "variable_type": "env_var"}]
    by_save.save()
    save_existing(by_update)
    expected, got = row_of(Pipeline, by_save.pk), row_of(Pipeline, by_update.pk)
    differ = {"id", "iid", "sha", "ref"}  # the two rows' own
    assert {k: v for k, v in got.items() if k not in differ} == {
        k: v for k, v in expected.items() if k not in differ
    }
    assert (got["status"], got["name"], got["user_id"]) == ("running", "renamed", None)
    assert (got["started_at"], got["variables"][0]["key"]) == (AT, "A")


def test_save_existing_leaves_to_save_what_it_does_not_do(two_projects):
    _, pipelines = two_projects
    job = Job.objects.filter(pipeline=pipelines[0], retried=False).first()
    # An expression is the ORM's to write.
    job.stage_idx = F("stage_idx") + 5
    save_existing(job)
    assert row_of(Job, job.pk)["stage_idx"] in (5, 6)
    # A row gone since it was read is inserted again, as save() does.
    gone = Job.objects.filter(pipeline=pipelines[1]).first()
    Job.objects.filter(pk=gone.pk).delete()
    gone.name = "back"
    save_existing(gone)
    assert row_of(Job, gone.pk)["name"] == "back"
    # A new object is inserted.
    new = Job(pipeline=pipelines[2], name="new", stage="test")
    save_existing(new)
    assert row_of(Job, new.pk)["name"] == "new"


def test_a_number_no_column_holds_matches_nothing_before_and_after_it_is_built(two_projects):
    projects, pipelines = two_projects
    huge = 2**70
    project = projects[0]
    pipeline = next(p for p in pipelines if p.project_id == project.pk and p.pk != project.pk)
    prepared = PreparedQuery(lambda project_id, pk: _locked_pipelines(project_id).filter(pk=pk))
    with transaction.atomic():
        assert prepared(project.pk, huge) == []  # not built yet
        assert [p.pk for p in prepared(project.pk, pipeline.pk)] == [pipeline.pk]
        assert prepared._compiled
        assert prepared(project.pk, huge) == []  # built
        assert prepared(huge, pipeline.pk) == []


def outcome(run) -> object:
    try:
        return [row.pk for row in run()]
    except TransactionManagementError as error:
        return type(error)


@pytest.mark.django_db(transaction=True)
def test_a_locking_read_outside_a_transaction_goes_as_the_orms():
    """Refused on PostgreSQL (a row lock outside a transaction would lock nothing), run on
    SQLite (which has no row locks): the same for the prepared read as for its QuerySet."""
    project = ProjectFactory()
    pipeline = PipelineFactory(project=project)
    with transaction.atomic():
        assert [p.pk for p in PIPELINE_BY_ID(project.pk, pipeline.pk)] == [pipeline.pk]
    orm = outcome(lambda: _locked_pipelines(project.pk).filter(pk=pipeline.pk)[:1])
    assert outcome(lambda: PIPELINE_BY_ID(project.pk, pipeline.pk)) == orm
    assert orm in ([pipeline.pk], TransactionManagementError)


def test_save_existing_gives_a_related_object_saved_after_assignment_its_id(two_projects):
    _, pipelines = two_projects
    pipeline = Pipeline.objects.get(pk=pipelines[0].pk)
    bob = UserFactory.build(username="bob")
    pipeline.user = bob
    bob.save()
    save_existing(pipeline)
    assert row_of(Pipeline, pipeline.pk)["user_id"] == bob.pk
