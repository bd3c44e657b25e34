"""Queries the inbound paths run on every request, their SQL built once.

Django builds a query's SQL anew each time it runs it: resolving the filters, the joins of
``select_related``, the columns, the ordering. For the reads every commit status makes (its
project, its pipeline under the row lock, that pipeline's latest jobs, the project's hooks)
that was a fifth of the request, more than running them. A ``PreparedQuery`` is made from the very
QuerySet the code would run; its SQL is built the first time, and each later run puts that
run's values in place of the first run's and makes the model instances (with their
``select_related`` objects) as the QuerySet would.

Only what can be told apart safely is kept: the values must go to exact comparisons (``=``,
as the filters here do), and each must be an ``int`` or a ``str`` that appears exactly once
among the query's parameters, as itself (so the ORM passed it to the database unchanged, or
in a driver's type for it, which each run keeps). Otherwise that run goes through the ORM as
usual, and the next one tries again.
``tests/pipelines/test_prepared.py`` compares every prepared query with its QuerySet.

``save_existing`` does the same for the ``UPDATE`` of a job or pipeline that changed, and
``create_new`` and ``bulk_insert`` for the ``INSERT`` of new rows (the outbox's event and its
deliveries): the ORM builds the statement for the first objects of a model (and, for several,
of their number), and later ones go into it with their values prepared by their fields, as
the ORM prepares them. ``PreparedValues`` keeps the SQL of a query of plain values (the last
sequence of each hook's stream) per length of its lists of numbers.
``tests/pipelines/test_prepared_writes.py`` compares them with the ORM on both databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connections, transaction
from django.db.models import DateField, DateTimeField, Field, Model, QuerySet, signals
from django.db.models.query import ModelIterable, get_related_populators
from django.db.models.sql.subqueries import InsertQuery
from django.db.transaction import TransactionManagementError

# The range of a 64-bit signed integer column, the widest the models use.
SMALLEST, LARGEST = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    positions: tuple[int, ...]  # where each value of the call goes in ``params``
    wrappers: tuple[type, ...]  # the type the ORM gave each (int, str, or a driver's subclass)
    model: type[Model]
    init_list: list[str]
    fields_start: int
    fields_end: int
    select: list
    klass_info: dict
    converters: dict
    for_update: bool


class PreparedQuery:
    """``PreparedQuery(lambda project_id, sha: Pipeline.objects.filter(...))``; calling it
    with the values gives the list of model instances the QuerySet would give."""

    def __init__(self, build: Callable[..., QuerySet]):
        self.build = build
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def __call__(self, *values: int | str, using: str = "default") -> list[Model]:
        connection = connections[using]
        if any(type(v) is int and not SMALLEST <= v <= LARGEST for v in values):
            # No column holds it, so no row equals it; the database would refuse the number
            # (and the ORM passes it on for a foreign key).
            return []
        key = (using, connection.vendor)
        compiled = self._compiled.get(key)
        if compiled is None:
            queryset = self.build(*values)
            compiled = _compile(queryset, values, using)
            if compiled is None:
                return list(queryset.using(using))
            with self._lock:
                self._compiled.setdefault(key, compiled)
        return list(_run(compiled, values, connection, using))


def _compile(queryset: QuerySet, values: tuple, using: str) -> _Compiled | None:
    if (
        queryset._iterable_class is not ModelIterable
        or queryset._known_related_objects
        or queryset._prefetch_related_lookups
    ):
        return None
    compiler = queryset.query.get_compiler(using=using)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:  # a filter that can match nothing: the ORM answers it
        return None
    positions, wrappers = [], []
    for value in values:
        if type(value) not in (int, str):
            return None
        # The ORM may hand the driver a subclass of the value's type (psycopg's Int4 for an
        # IntegerField): the same value, kept in the same wrapper for every run.
        found = [i for i, p in enumerate(params) if _same(p, value)]
        if len(found) != 1:
            return None
        positions.append(found[0])
        wrappers.append(type(params[found[0]]))
    if len(set(positions)) != len(positions) or compiler.annotation_col_map:
        return None
    select, klass_info = compiler.select, compiler.klass_info
    fields = klass_info["select_fields"]
    start, end = fields[0], fields[-1] + 1
    return _Compiled(
        sql=sql,
        params=tuple(params),
        positions=tuple(positions),
        wrappers=tuple(wrappers),
        model=klass_info["model"],
        init_list=[column[0].target.attname for column in select[start:end]],
        fields_start=start,
        fields_end=end,
        select=select,
        klass_info=klass_info,
        converters=compiler.get_converters([column[0] for column in select]),
        for_update=bool(queryset.query.select_for_update),
    )


def _same(param: Any, value: int | str) -> bool:
    if isinstance(value, str):
        return isinstance(param, str) and param == value
    return isinstance(param, int) and not isinstance(param, bool) and param == value


def _run(compiled: _Compiled, values: tuple, connection, using: str) -> Iterator[Model]:
    if (
        compiled.for_update
        and connection.features.has_select_for_update
        and connection.get_autocommit()
    ):
        # What Django checks when it builds the SQL, checked at each run here.
        raise TransactionManagementError(
            "select_for_update cannot be used outside of a transaction."
        )
    params = list(compiled.params)
    for position, wrapper, value in zip(compiled.positions, compiled.wrappers, values, strict=True):
        params[position] = value if type(value) is wrapper else wrapper(value)
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, params)
        rows = cursor.fetchall()
    if compiled.converters:
        rows = _converted(rows, compiled.converters, connection)
    # Made for each run: a populator is cheap, and keeps nothing between runs this way.
    populators = get_related_populators(compiled.klass_info, compiled.select, using)
    for row in rows:
        obj = compiled.model.from_db(
            using, compiled.init_list, row[compiled.fields_start : compiled.fields_end]
        )
        for populator in populators:
            populator.populate(row, obj)
        yield obj


def _converted(rows: list, converters: dict, connection) -> Iterator[list[Any]]:
    """What ``SQLCompiler.apply_converters`` does: the database's values as the fields'."""
    steps = list(converters.items())
    for row in rows:
        row = list(row)
        for position, (functions, expression) in steps:
            value = row[position]
            for function in functions:
                value = function(value, expression, connection)
            row[position] = value
        yield row


# --- Rows of plain values ------------------------------------------------------------------


@dataclass(frozen=True)
class _CompiledValues:
    sql: str
    params: tuple
    positions: tuple[int, ...]  # where each number of the call goes in ``params``
    wrappers: tuple[type, ...]
    converters: dict


class PreparedValues:
    """``PreparedValues(lambda ids, key: Model.objects.filter(a__in=ids, b=key).values_list(...))``
    for a query whose rows are values, not models: called with numbers and tuples of
    numbers, it gives the rows the QuerySet would, as tuples. Its SQL is built once for each
    length of the tuples, from stand-in numbers no row holds, so that each of the call's
    numbers is found in the parameters however the ORM orders them."""

    def __init__(self, build: Callable[..., QuerySet]):
        self.build = build
        self._compiled: dict[tuple, _CompiledValues | None] = {}
        self._lock = threading.Lock()

    def __call__(self, *values: int | tuple[int, ...], using: str = "default") -> list[tuple]:
        connection = connections[using]
        shape = tuple(len(v) if isinstance(v, tuple) else None for v in values)
        numbers = [n for v in values for n in (v if isinstance(v, tuple) else (v,))]
        if any(type(n) is not int or not SMALLEST <= n <= LARGEST for n in numbers):
            return [tuple(row) for row in self.build(*values).using(using)]
        key = (using, connection.vendor, shape)
        if key not in self._compiled:
            with self._lock:
                self._compiled.setdefault(key, _compile_values(self.build, shape, using))
        compiled = self._compiled[key]
        if compiled is None:
            return [tuple(row) for row in self.build(*values).using(using)]
        params = list(compiled.params)
        for position, wrapper, number in zip(
            compiled.positions, compiled.wrappers, numbers, strict=True
        ):
            params[position] = number if type(number) is wrapper else wrapper(number)
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if compiled.converters:
            return [tuple(row) for row in _converted(rows, compiled.converters, connection)]
        return [tuple(row) for row in rows]


def _compile_values(build, shape: tuple, using: str) -> _CompiledValues | None:
    # Stand-ins no id takes (negative, yet in range for a 32-bit column): each must then be
    # found exactly once among the parameters. A filter that refuses them (a positive field)
    # leaves the query to the ORM.
    stand_ins = iter(range(-(2**31) + 1, 0))
    values = [
        tuple(next(stand_ins) for _ in range(length)) if length is not None else next(stand_ins)
        for length in shape
    ]
    numbers = [n for v in values for n in (v if isinstance(v, tuple) else (v,))]
    queryset = build(*values)
    compiler = queryset.query.get_compiler(using=using)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    positions = []
    for number in numbers:
        found = [i for i, p in enumerate(params) if _same(p, number)]
        if len(found) != 1:
            return None
        positions.append(found[0])
    fields = [column[0] for column in compiler.select[: compiler.col_count]]
    return _CompiledValues(
        sql=sql,
        params=tuple(params),
        positions=tuple(positions),
        wrappers=tuple(type(params[i]) for i in positions),
        converters=compiler.get_converters(fields),
    )


# --- Saving a row that exists -----------------------------------------------------------------

_updates: dict[tuple[type[Model], str, str], tuple[str, list]] = {}


def save_existing(obj: Model, using: str = "default") -> None:
    """``obj.save()`` for a row read from the table, with its ``UPDATE`` (every column, as
    ``save()`` writes them) built once per model rather than by the ORM at each save.

    Anything ``save()`` would do beyond that goes through ``save()`` itself: a new object, a
    model with parents, signals someone listens to, a value that is an expression, and a row
    that is no longer there (which ``save()`` inserts)."""
    model = type(obj)
    meta = model._meta
    if (
        obj._state.adding
        or obj.pk is None
        or meta.parents
        or obj.get_deferred_fields()
        or signals.pre_save.has_listeners(model)
        or signals.post_save.has_listeners(model)
    ):
        obj.save(using=using)
        return
    # As save() does: a related object assigned before it was saved gives its id now.
    obj._prepare_related_fields_for_save(operation_name="save")
    connection = connections[using]
    key = (model, using, connection.vendor)
    statement = _updates.get(key)
    if statement is None:
        statement = _updates.setdefault(key, _update_statement(model, connection))
    sql, fields = statement
    values = []
    for field in fields:
        value = field.get_db_prep_save(field.pre_save(obj, False), connection=connection)
        if hasattr(value, "resolve_expression"):
            obj.save(using=using)
            return
        values.append(value)
    values.append(meta.pk.get_db_prep_value(obj.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        updated = cursor.rowcount
    if updated != 1:
        obj.save(using=using)
        return
    obj._state.db = using


def _update_statement(model: type[Model], connection) -> tuple[str, list]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [f for f in meta.local_concrete_fields if not f.primary_key and not f.generated]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    # Only the model's own names, quoted by the backend, go into the text; values are parameters.
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    return sql, fields


# --- Inserting new rows -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Insert:
    sql: str
    fields: list  # the columns given a value, in the statement's order
    by_column: bool  # one list of values per column (PostgreSQL's UNNEST), not row after row
    returning: list  # the fields RETURNING gives back, each row's in this order
    converters: dict


_inserts: dict[tuple[type[Model], int, str, str], _Insert] = {}
_plans: dict[type[Model], list] = {}
_NOTHING = object()
_DJANGO_FIELDS = "django.db.models."


def create_new(obj: Model, using: str = "default") -> Model:
    """``Model.objects.create(...)`` for an object just made, with its ``INSERT`` built once
    per model: the same columns and values, the id (and whatever else the database gives
    back) set on it, and its state saved. A model with a ``save()`` of its own, or whose
    saves someone listens to, is saved by ``save()`` itself."""
    model = type(obj)
    if (
        model.save is not Model.save
        or signals.pre_save.has_listeners(model)
        or signals.post_save.has_listeners(model)
    ):
        obj.save(force_insert=True, using=using)
        return obj
    obj._prepare_related_fields_for_save(operation_name="save")
    if not _insert(model, [obj], using):
        obj.save(force_insert=True, using=using)
    return obj


def bulk_insert(objs: list[Model], using: str = "default") -> list[Model]:
    """``Model.objects.bulk_create(objs)`` for new objects of one model, in one multi-row
    ``INSERT ... RETURNING`` built once per model and number of rows: the same columns and
    values, each object given its id. As ``bulk_create``, it sends no signals."""
    if not objs:
        return objs
    model = type(objs[0])
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
    if not _insert(model, objs, using):
        model._base_manager.using(using).bulk_create(objs)
    return objs


def _insert(model: type[Model], objs: list[Model], using: str) -> bool:
    """Write ``objs`` with the statement built for their number, or build it now. False when
    the ORM must write them: its statement cannot be told apart safely (see ``_build_insert``),
    a value is an expression, or an object is not new."""
    meta = model._meta
    connection = connections[using]
    if (
        meta.parents
        or meta.order_with_respect_to
        or meta.auto_field is None
        or not connection.features.can_return_rows_from_bulk_insert
        or any(type(o) is not model or o.pk is not None or not o._state.adding for o in objs)
    ):
        return False
    key = (model, len(objs), using, connection.vendor)
    statement = _inserts.get(key)
    fields = statement.fields if statement else _insert_fields(meta)
    plan = _plans.get(model) or _plans.setdefault(model, _plan(fields))
    rows = []
    # A value shared by the rows (the event's id, "now", a default's constant) is prepared
    # once: Django's fields prepare a value the same way every time.
    last_values: list[Any] = [_NOTHING] * len(fields)
    last_prepared: list[Any] = [None] * len(fields)
    for obj in objs:
        row = []
        for index, (field, attname, plain, shared) in enumerate(plan):
            value = getattr(obj, attname) if plain else field.pre_save(obj, True)
            if shared and value is last_values[index]:
                row.append(last_prepared[index])
                continue
            if hasattr(value, "resolve_expression"):  # a database default, F(), a function...
                return False
            prepared = field.get_db_prep_save(value, connection=connection)
            last_values[index], last_prepared[index] = value, prepared
            row.append(prepared)
        rows.append(row)
    if statement is None:
        if len(objs) > connection.ops.bulk_batch_size(fields, objs):
            return False  # bulk_create would split them over several statements
        statement = _build_insert(model, fields, objs, rows, using)
        if statement is None:
            return False
        _inserts.setdefault(key, statement)
    if statement.by_column:
        params = [list(column) for column in zip(*rows, strict=True)]
    else:
        params = [value for row in rows for value in row]
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        returned = cursor.fetchall()
    if len(returned) != len(objs):  # never seen; the ORM's bulk_create asserts the same
        raise DatabaseError(f"{len(objs)} rows inserted, {len(returned)} returned")
    if statement.converters:
        returned = _converted(returned, statement.converters, connection)
    for obj, values in zip(objs, returned, strict=True):
        for field, value in zip(statement.returning, values, strict=True):
            setattr(obj, field.attname, value)
        obj._state.adding = False
        obj._state.db = using
    return True


def _plan(fields: list) -> list[tuple[Field, str, bool, bool]]:
    """For each field: its attribute, whether its ``pre_save`` only reads it (no
    ``auto_now``), and whether a value shared by the rows may be prepared once (a field of
    Django's own, whose preparing depends on the value alone)."""
    plan = []
    for field in fields:
        pre_save = type(field).pre_save
        plain = pre_save is Field.pre_save or (
            pre_save in (DateField.pre_save, DateTimeField.pre_save)
            and not field.auto_now
            and not field.auto_now_add
        )
        shared = type(field).__module__.startswith(_DJANGO_FIELDS)
        plan.append((field, field.attname, plain, shared))
    return plan


def _insert_fields(meta) -> list:
    # What save() and bulk_create() write for a new object of a model without parents.
    return [f for f in meta.local_concrete_fields if not f.generated and f is not meta.auto_field]


def _same_values(ours: list, orms: list) -> bool:
    """Whether the ORM's parameters are the values prepared here. A driver's wrapper that
    does not compare by value (psycopg's ``Jsonb`` for a JSON column, made anew at each
    preparing) is the same when it wraps an equal value."""
    if len(ours) != len(orms):
        return False
    for mine, theirs in zip(ours, orms, strict=True):
        if isinstance(mine, list) and isinstance(theirs, list):
            if not _same_values(mine, theirs):
                return False
        elif not (
            mine == theirs
            or (
                type(mine) is type(theirs)
                and hasattr(mine, "obj")
                and getattr(mine, "obj", None) == getattr(theirs, "obj", None)
            )
        ):
            return False
    return True


def _build_insert(model, fields, objs, rows, using) -> _Insert | None:
    """The ORM's own ``INSERT`` for these objects, kept if its parameters are exactly the
    values prepared here, laid out row after row or one list per column."""
    meta = model._meta
    query = InsertQuery(model)
    # raw: the values as pre_save() has just made them (auto_now would make them anew).
    query.insert_values(fields, objs, raw=True)
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = meta.db_returning_fields
    statements = compiler.as_sql()
    if len(statements) != 1:
        return None
    sql, params = statements[0]
    params = list(params)
    if _same_values(params, [value for row in rows for value in row]):
        by_column = False
    elif _same_values(params, [list(column) for column in zip(*rows, strict=True)]):
        by_column = True
    else:
        return None
    returning = list(meta.db_returning_fields)
    columns = [field.get_col(meta.db_table) for field in returning]
    return _Insert(
        sql=sql,
        fields=fields,
        by_column=by_column,
        returning=returning,
        converters=compiler.get_converters(columns),
    )
