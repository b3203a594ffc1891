"""Multi-row writes for the engine: one statement for many changed or new model instances."""

from __future__ import annotations

from collections.abc import Sequence

from peewee import (
    AutoField,
    DateField,
    DecimalField,
    Field,
    ForeignKeyField,
    IntegerField,
    Model,
    UUIDField,
)
from playhouse.postgres_ext import BinaryJSONField, DateTimeTZField
from psycopg2.extras import execute_values

from app.db import db


def _sql_type(field: Field) -> str:
    if isinstance(field, ForeignKeyField):
        return _sql_type(field.rel_field)
    if isinstance(field, UUIDField):
        return "uuid"
    if isinstance(field, DecimalField):
        return "numeric"
    if isinstance(field, IntegerField):  # AutoField included
        return "bigint"
    if isinstance(field, DateTimeTZField):
        return "timestamptz"
    if isinstance(field, DateField):
        return "date"
    if isinstance(field, BinaryJSONField):
        return "jsonb"
    return "text"


def _values(row: Model, fields: Sequence[Field]) -> list:
    # __data__ holds raw values: a foreign key stays an id instead of loading the related row.
    return [field.db_value(row.__data__.get(field.name)) for field in fields]


def bulk_update(model: type[Model], rows: Sequence[Model], fields: Sequence[Field]) -> None:
    """``UPDATE … FROM (VALUES …)``: write ``fields`` of every row in one statement."""
    if not rows:
        return
    key = model._meta.primary_key
    columns = [key, *fields]
    names = ", ".join(f'"{field.column_name}"' for field in columns)
    assignments = ", ".join(f'"{f.column_name}" = v."{f.column_name}"' for f in fields)
    template = "(" + ", ".join(f"%s::{_sql_type(field)}" for field in columns) + ")"
    statement = (
        f'UPDATE "{model._meta.table_name}" AS t SET {assignments} '
        f"FROM (VALUES %s) AS v ({names}) "
        f'WHERE t."{key.column_name}" = v."{key.column_name}"'
    )
    with db.cursor() as cursor:
        execute_values(
            cursor, statement, [_values(row, columns) for row in rows], template, len(rows)
        )


def bulk_insert(model: type[Model], rows: Sequence[Model]) -> None:
    """``INSERT … VALUES (…), (…)`` of new instances (database-generated serial ids excluded)."""
    if not rows:
        return
    fields = [f for f in model._meta.sorted_fields if not isinstance(f, AutoField)]
    names = ", ".join(f'"{field.column_name}"' for field in fields)
    template = "(" + ", ".join(f"%s::{_sql_type(field)}" for field in fields) + ")"
    statement = f'INSERT INTO "{model._meta.table_name}" ({names}) VALUES %s'
    with db.cursor() as cursor:
        execute_values(
            cursor, statement, [_values(row, fields) for row in rows], template, len(rows)
        )
