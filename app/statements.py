"""Read queries written with Peewee, compiled to SQL once per shape, run with fresh parameters.

Turning a Peewee query into SQL costs more than PostgreSQL takes to run it (about 1.5 ms for a
23-column select on this stack, against 0.6 ms for the query), and building model instances
doubles that again for a page of 50 rows. A hot read is therefore declared once, with a
named parameter for each value that varies; the SQL of each combination of filters is compiled on
first use and kept, and rows come back as plain dicts keyed by column name.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from peewee import SQL, AutoField, ModelSelect, Value, fn

from app.db import db


class Param:
    """Where a named value goes in a compiled statement (it stays in the parameter list)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def parameter(name: str) -> Value:
    """A query value given at run time: rendered as ``%s``, never converted."""
    return Value(Param(name), converter=False)


Condition = Callable[[Value], Any]


def text_uuids(*columns):
    """The columns, with every UUID read as text.

    peewee registers psycopg2's UUID type process-wide, so each uuid value would become a
    ``uuid.UUID`` only to be written back out as text in the JSON (8 % of a page of orders).
    """
    return tuple(
        column.cast("text").alias(column.column_name)
        if getattr(column, "field_type", None) == "UUID"
        else column
        for column in columns
    )


def _adapted(value):
    # psycopg2 has no adapter for uuid.UUID unless one is registered process-wide; the text
    # form compares with a uuid column just as well.
    return str(value) if isinstance(value, uuid.UUID) else value


def _bind(template: list, values: Mapping[str, Any]) -> list:
    return [_adapted(values[item.name]) if isinstance(item, Param) else item for item in template]


class CompiledSelect:
    """A select and the conditions it may be narrowed by, compiled once per set of conditions.

    ``build`` returns the Peewee select (columns, joins, order); ``conditions`` maps a filter
    name to a function of a parameter, e.g. ``lambda p: Order.status == p``. Constants in the
    query stay parameters of the compiled statement, so nothing is ever formatted into SQL.
    """

    def __init__(self, build: Callable[[], ModelSelect], conditions: Mapping[str, Condition]):
        self.build = build
        self.conditions = dict(conditions)

    @functools.cached_property
    def model(self):
        """The model the select reads."""
        return self.build().model

    def shape_of(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        """The names of the conditions that apply: those whose value is not None."""
        unknown = set(values) - set(self.conditions)
        if unknown:
            raise KeyError(f"no condition named {', '.join(sorted(unknown))}")
        return tuple(name for name in self.conditions if values.get(name) is not None)

    def narrowed(self, shape: tuple[str, ...]) -> ModelSelect:
        """The Peewee select with the conditions of ``shape`` applied (parameters inside)."""
        query = self.build()
        for name in shape:
            query = query.where(self.conditions[name](parameter(name)))
        return query

    @functools.cache  # noqa: B019 (instances are module-level constants that live forever)
    def compiled(self, shape: tuple[str, ...], kind: str = "rows") -> tuple[str, list]:
        """SQL and parameter template of the ``rows``, ``first``, ``page``, ``count`` or ``plan``
        query."""
        query = self.narrowed(shape)
        if kind == "first":
            # A constant limit and no offset: a parameter there would make PostgreSQL plan
            # each run of the prepared statement anew instead of keeping its generic plan.
            query = query.limit(SQL("1"))
        elif kind == "page":
            query = query.limit(parameter("limit")).offset(parameter("offset"))
        elif kind == "count":
            bounded = query.order_by().select(SQL("1")).limit(parameter("bound"))
            query = self.model.select(fn.COUNT(SQL("1"))).from_(bounded.alias("m"))
        elif kind == "plan":
            sql, params = query.order_by().select(SQL("1")).sql()
            return "EXPLAIN (FORMAT JSON) " + sql, params
        return query.sql()

    def execute(self, values: Mapping[str, Any], kind: str = "rows"):
        """Run one of the compiled queries with ``values`` (conditions, limit, offset, bound)."""
        sql, template = self.compiled(self.shape_of(_conditions_only(values)), kind)
        return db.execute_prepared(sql, _bind(template, values))

    def rows(self, values: Mapping[str, Any], *, limit: int | None = None, offset: int = 0):
        """Matching rows as dicts; all of them, or one page when ``limit`` is given."""
        if limit is None:
            return dicts(self.execute(values))
        return dicts(self.execute({**values, "limit": limit, "offset": offset}, "page"))

    def instances(self, values: Mapping[str, Any], *, limit: int | None = None) -> list:
        """Matching rows as model instances, as the ORM would have read them."""
        model = self.model
        columns = model._meta.columns
        found = []
        for row in self.rows(values, limit=limit):
            instance = model(__no_default__=True)
            for column, value in row.items():
                field = columns[column]
                instance.__data__[field.name] = field.python_value(value)
            found.append(instance)
        return found

    def first(self, values: Mapping[str, Any]) -> dict | None:
        """The first matching row, or None."""
        found = dicts(self.execute(values, "first"))
        return found[0] if found else None

    def count_up_to(self, values: Mapping[str, Any], bound: int) -> int:
        """How many rows match, counting no further than ``bound``."""
        return self.execute({**values, "bound": bound}, "count").fetchone()[0]

    def estimate(self, values: Mapping[str, Any]) -> int:
        """The planner's estimate of the number of matches."""
        plan = self.execute(values, "plan").fetchone()[0]
        return int(plan[0]["Plan"]["Plan Rows"])


# Values that are not conditions: the page and the count's bound.
_NOT_CONDITIONS = ("limit", "offset", "bound")


def _conditions_only(values: Mapping[str, Any]) -> dict:
    return {name: value for name, value in values.items() if name not in _NOT_CONDITIONS}


def dicts(cursor) -> list[dict]:
    """Every row of a run cursor as a dict keyed by column name."""
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@functools.cache
def _insert_sql(model, names: tuple[str, ...]) -> str:
    # Written out rather than through model.insert(), which would add the fields' defaults as
    # constants of the cached statement (a created_at fixed at the first insert).
    columns = ", ".join(_quoted(model._meta.fields[name].column_name) for name in names)
    values = ", ".join(["%s"] * len(names))
    sql = f"INSERT INTO {_quoted(model._meta.table_name)} ({columns}) VALUES ({values})"
    key = model._meta.primary_key
    if isinstance(key, AutoField) and key.name not in names:
        sql += f" RETURNING {_quoted(key.column_name)}"
    return sql


def insert(model, **values) -> tuple[object, str, list]:
    """The instance ``model(**values)`` (defaults applied as ``Model.create`` applies them),
    and the compiled INSERT with its parameters that would store it."""
    instance = model(**values)
    data = {
        name: value
        for name, value in instance.__data__.items()
        if not (name == model._meta.primary_key.name and value is None)
    }
    names = tuple(data)
    params = [model._meta.fields[name].db_value(value) for name, value in data.items()]
    return instance, _insert_sql(model, names), params


def create(model, **values):
    """``model.create(**values)`` with the INSERT compiled once per set of columns.

    The instance is built by the model, so defaults apply exactly as in ``create``; each value
    goes through its field's ``db_value``. An auto-numbered key is read back with RETURNING.
    """
    instance, sql, params = insert(model, **values)
    cursor = db.execute_prepared(sql, params)
    if cursor.description:
        setattr(instance, model._meta.primary_key.name, cursor.fetchone()[0])
    instance._dirty.clear()
    return instance
