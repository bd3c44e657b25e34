"""The outbox's prepared writes (pipelines.prepared): ``bulk_insert`` and ``create_new`` write
the rows ``bulk_create`` and ``create`` write and give back the same ids, ``PreparedValues``
gives the rows of its QuerySet; each builds its SQL once per shape and leaves to the ORM what
it cannot do. Run on SQLite and on PostgreSQL (``DATABASE_URL``): their statements differ (a
multi-row ``VALUES`` on SQLite, ``UNNEST`` of one array per column on PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Max, Model, signals
from django.db.models.functions import Now
from django.db.models.sql.compiler import SQLCompiler, SQLInsertCompiler
from django.utils import timezone

from hooks.models import Delivery, Event
from hooks.receivers import LAST_SEQUENCES
from pipelines import prepared
from pipelines.models import Job, Pipeline, PipelineDefinition, Project
from pipelines.prepared import PreparedValues, bulk_insert, create_new
from pipelines.signals import PipelineChange
from tests.factories import HookFactory, PipelineFactory, ProjectFactory

pytestmark = pytest.mark.django_db

AT = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)


@pytest.fixture
def outbox():
    project = ProjectFactory()
    pipeline = PipelineFactory(project=project)
    hooks = [HookFactory(project=project, url=f"http://127.0.0.1:9/{n}") for n in range(10)]
    return project, pipeline, hooks


def new_event(project, pipeline, **values) -> Event:
    given = {
        "project_id": project.pk,
        "pipeline": pipeline,
        "object_kind": Event.Kind.PIPELINE,
        "change": str(PipelineChange.STATUS_CHANGED),
        "status": "running",
        "previous_status": "pending",
        "body": '{"object_kind": "pipeline"}',
    }
    return Event(**(given | values))


def new_deliveries(event, hooks, order_key, **values) -> list[Delivery]:
    """Deliveries as the outbox makes them: every other column left to its default."""
    return [
        Delivery(
            event=event,
            hook=hook,
            order_key=order_key,
            sequence=number,
            next_attempt_at=AT,
            queued_until=AT + timedelta(seconds=60),
            **values,
        )
        for number, hook in enumerate(hooks, start=1)
    ]


def rows_of(model, objs) -> list[dict]:
    rows = {row["id"]: row for row in model.objects.filter(pk__in=[o.pk for o in objs]).values()}
    return [rows[obj.pk] for obj in objs]


def without(row: dict, *names: str) -> dict:
    return {name: value for name, value in row.items() if name not in names}


def count_insert_builds(monkeypatch) -> list:
    built = []
    as_sql = SQLInsertCompiler.as_sql
    monkeypatch.setattr(
        SQLInsertCompiler, "as_sql", lambda self, *a, **k: built.append(1) or as_sql(self, *a, **k)
    )
    return built


@pytest.mark.parametrize("count", [1, 2, 10])
def test_bulk_insert_writes_the_rows_and_ids_bulk_create_writes(outbox, count, monkeypatch):
    project, pipeline, hooks = outbox
    event = Event.objects.create(**vars_of(new_event(project, pipeline)))
    hooks = hooks[:count]
    by_orm = Delivery.objects.bulk_create(new_deliveries(event, hooks, order_key=1))
    ours = bulk_insert(new_deliveries(event, hooks, order_key=2))
    again = bulk_insert(new_deliveries(event, hooks, order_key=3))  # the statement kept

    for objs in (ours, again):
        # Ids in the order of the objects, each the id of its own row.
        assert all(obj.pk is not None for obj in objs)
        assert [row["id"] for row in rows_of(Delivery, objs)] == [obj.pk for obj in objs]
        assert [obj.pk for obj in objs] == sorted(obj.pk for obj in objs)
        assert all(not obj._state.adding and obj._state.db == "default" for obj in objs)
        # Every column as bulk_create wrote it; each row its own idempotency key and moment.
        own = ("id", "order_key", "idempotency_key", "created_at")
        assert [without(row, *own) for row in rows_of(Delivery, objs)] == [
            without(row, *own) for row in rows_of(Delivery, by_orm)
        ]
        for row, obj in zip(rows_of(Delivery, objs), objs, strict=True):
            assert (row["idempotency_key"], row["created_at"]) == (
                obj.idempotency_key,
                obj.created_at,
            )
        assert len({obj.idempotency_key for obj in objs}) == count
    assert [row["sequence"] for row in rows_of(Delivery, again)] == list(range(1, count + 1))
    statement = prepared._inserts[(Delivery, count, "default", connection.vendor)]
    # PostgreSQL's several rows go as one array per column: that layout is the one tested.
    assert statement.by_column == (count > 1 and connection.vendor == "postgresql")

    built = count_insert_builds(monkeypatch)
    bulk_insert(new_deliveries(event, hooks, order_key=4))
    assert built == []


def vars_of(event: Event) -> dict:
    return {f.attname: getattr(event, f.attname) for f in Event._meta.concrete_fields[1:]}


def test_create_new_writes_the_row_create_writes(outbox, monkeypatch):
    project, pipeline, _ = outbox
    by_orm = Event.objects.create(
        **{k: v for k, v in vars_of(new_event(project, pipeline)).items() if k not in ("uuid",)}
    )
    ours = create_new(new_event(project, pipeline))
    assert ours.pk is not None and not ours._state.adding
    assert rows_of(Event, [ours])[0]["id"] == ours.pk
    own = ("id", "uuid", "created_at")
    assert without(rows_of(Event, [ours])[0], *own) == without(rows_of(Event, [by_orm])[0], *own)
    assert rows_of(Event, [ours])[0]["uuid"] == ours.uuid != by_orm.uuid
    assert rows_of(Event, [ours])[0]["created_at"] == ours.created_at

    built = count_insert_builds(monkeypatch)
    later = create_new(new_event(project, pipeline, created_at=AT, previous_status=None))
    assert built == []
    row = rows_of(Event, [later])[0]
    assert (row["id"], row["created_at"], row["previous_status"]) == (later.pk, AT, None)


def test_what_it_does_not_do_goes_through_the_orm(outbox, monkeypatch):
    project, pipeline, hooks = outbox
    event = create_new(new_event(project, pipeline))
    # An expression for a value: the ORM's to write.
    deliveries = bulk_insert(new_deliveries(event, hooks[:2], order_key=5, created_at=Now()))
    assert all(obj.pk is not None for obj in deliveries)
    assert Delivery.objects.filter(order_key=5).count() == 2
    # An object given its id is written with that id, as bulk_create writes it.
    chosen = Delivery.objects.aggregate(top=Max("pk"))["top"] + 100
    [given] = new_deliveries(event, hooks[:1], order_key=6)
    given.pk = chosen
    bulk_insert([given])
    assert Delivery.objects.get(order_key=6).pk == chosen
    # Someone listening to saves: create_new saves, so they hear of it.
    heard = []

    def listen(sender, instance, created, **kwargs):
        heard.append((instance.pk, created))

    signals.post_save.connect(listen, sender=Event)
    try:
        listened = create_new(new_event(project, pipeline))
    finally:
        signals.post_save.disconnect(listen, sender=Event)
    assert heard == [(listened.pk, True)]
    # A save() of the model's own: create_new calls it, as create() does.
    saved = []
    monkeypatch.setattr(
        Event, "save", lambda self, *a, **k: saved.append(1) or Model.save(self, *a, **k)
    )
    own = create_new(new_event(project, pipeline))
    assert saved == [1] and rows_of(Event, [own])[0]["id"] == own.pk


def test_auto_now_and_values_it_cannot_compare_are_written_as_the_orm_writes_them(outbox):
    project, _, _ = outbox
    # auto_now: set on the objects and in their rows, as bulk_create sets it.
    before = timezone.now()
    projects = bulk_insert([Project(namespace="g", path=f"p{n}") for n in range(2)])
    for obj, row in zip(projects, rows_of(Project, projects), strict=True):
        assert before <= obj.updated_at == row["updated_at"]
        assert (row["id"], row["path"], row["default_branch"]) == (obj.pk, obj.path, "main")
    # A JSON column (an adapter object on PostgreSQL): written whichever way it goes.
    variables = [{"name": "branch", "type": "Text", "required": False}]
    definitions = bulk_insert(
        [PipelineDefinition(project=project, name=f"d{n}", variables=variables) for n in (1, 2)]
    )
    assert [row["variables"] for row in rows_of(PipelineDefinition, definitions)] == [
        variables,
        variables,
    ]
    assert [row["id"] for row in rows_of(PipelineDefinition, definitions)] == [
        d.pk for d in definitions
    ]


def test_a_failed_insert_marks_the_transaction_for_rollback(outbox):
    project, pipeline, hooks = outbox
    event = create_new(new_event(project, pipeline))
    bulk_insert(new_deliveries(event, hooks[:2], order_key=7))  # the statement built
    with transaction.atomic():
        duplicates = new_deliveries(event, hooks[:2], order_key=7)  # the same sequences
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            bulk_insert(duplicates)
        # As the ORM's insert: the block is rolled back, even though the error was caught.
        assert transaction.get_rollback()
    assert Delivery.objects.filter(order_key=7).count() == 2


def last_sequences_by_orm(hook_ids, order_key) -> list[tuple]:
    return list(
        Delivery.objects.filter(hook__in=hook_ids, order_key=order_key)
        .order_by()
        .values("hook_id")
        .annotate(last=Max("sequence"))
        .values_list("hook_id", "last")
    )


def test_prepared_values_give_the_rows_of_their_queryset(outbox, monkeypatch):
    project, pipeline, hooks = outbox
    event = create_new(new_event(project, pipeline))
    bulk_insert(new_deliveries(event, hooks[:6], order_key=pipeline.pk))
    bulk_insert(new_deliveries(event, hooks[:3], order_key=pipeline.pk + 1))
    # A hook whose id equals the pipeline's: told apart all the same.
    ids = [hook.pk for hook in hooks]
    for chosen in (ids, ids[:1], ids[2:5], [pipeline.pk, *ids[:2]]):
        for order_key in (pipeline.pk, pipeline.pk + 1, 10**12):
            got = LAST_SEQUENCES(tuple(chosen), order_key)
            assert sorted(got) == sorted(last_sequences_by_orm(chosen, order_key))
    assert sorted(LAST_SEQUENCES(tuple(ids), pipeline.pk)) == [
        (hook.pk, number) for number, hook in enumerate(hooks[:6], start=1)
    ]
    fresh = PreparedValues(LAST_SEQUENCES.build)  # nothing built yet, whatever ran before
    built = []
    as_sql = SQLCompiler.as_sql
    monkeypatch.setattr(
        SQLCompiler, "as_sql", lambda self, *a, **k: built.append(1) or as_sql(self, *a, **k)
    )
    for order_key in (pipeline.pk, pipeline.pk + 1):
        assert sorted(fresh(tuple(ids[:4]), order_key)) == sorted(
            last_sequences_by_orm(ids[:4], order_key)
        )
    assert len(built) == 1 + 2  # built once for four hooks; the ORM's own two runs


def test_prepared_values_leave_to_the_orm_what_they_cannot_build(outbox):
    project, pipeline, hooks = outbox
    event = create_new(new_event(project, pipeline))
    bulk_insert(new_deliveries(event, hooks[:3], order_key=pipeline.pk))
    # A positive column refuses the negative stand-ins: the ORM runs it every time.
    by_sequence = PreparedValues(
        lambda sequence: Delivery.objects.filter(sequence=sequence).values_list("hook_id")
    )
    assert by_sequence(2) == [(hooks[1].pk,)]
    assert by_sequence._compiled[("default", connection.vendor, (None,))] is None
    assert by_sequence(3) == [(hooks[2].pk,)]


def test_ids_from_the_outbox_go_into_the_messages(outbox, django_capture_on_commit_callbacks):
    """The outbox's own path: sequences go on from the stream's last, and the messages carry
    the ids the rows were given."""
    from hooks import queue
    from hooks.receivers import write_deliveries

    project, pipeline, hooks = outbox
    sent = []
    event = create_new(new_event(project, pipeline))
    with django_capture_on_commit_callbacks() as callbacks:
        # Outside a command each write reads the streams' last numbers afresh.
        first = write_deliveries(event, hooks, pipeline)
        second = write_deliveries(event, hooks, pipeline)
    assert [d.sequence for d in second] == [2] * len(hooks)
    rows = rows_of(Delivery, first + second)
    assert [row["id"] for row in rows] == [d.pk for d in first + second]
    assert {row["hook_id"]: row["sequence"] for row in rows_of(Delivery, second)} == {
        hook.pk: 2 for hook in hooks
    }
    for callback in callbacks:
        assert callback.func is queue.publish
        sent.extend(callback.args[0])
    assert sent == [d.pk for d in first + second]


def test_a_new_commit_writes_its_pipeline_and_job_with_statements_built_once(
    api_client, project, monkeypatch
):
    def first_status(sha):
        response = api_client.post(
            f"/api/v4/projects/{project.pk}/statuses/{sha}",
            {"state": "pending", "name": "build", "ref": "main"},
            format="json",
        )
        assert response.status_code == 201, response.json()
        return response.json()

    first_status("a" * 40)  # the statements are built here, if not before
    built = count_insert_builds(monkeypatch)
    answer = first_status("b" * 40)
    assert built == []
    job = Job.objects.get(pk=answer["id"])
    pipeline = Pipeline.objects.get(pk=job.pipeline_id)
    assert (pipeline.iid, pipeline.sha, pipeline.status) == (2, "b" * 40, "pending")
    assert (job.name, job.status, job.pipeline.project_id) == ("build", "pending", project.pk)
