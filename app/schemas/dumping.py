"""Response schemas compiled to plain functions: the same output as ``Schema.dump``, faster.

marshmallow serialises a field through several method calls (get_value, accessor, serialize,
_serialize); a page of 50 orders is 1,150 such fields. The response schemas stay the one
description of every body (the OpenAPI document is generated from them), and each is compiled
once into a straight-line function with a statement per field. A field type whose output is
not known here is serialised by marshmallow itself, so the result is always what ``dump``
would give.
Tests run with :data:`VERIFY` on, comparing every response against ``Schema.dump``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, missing

from app.models import format_timestamp
from app.schemas.fields import Timestamp, Uuid

# When true, every compiled dump is checked against marshmallow's own. The test suite sets the
# variable, so its live servers check too; a mismatch is an AssertionError (a 500).
VERIFY = os.environ.get("CRYPTOFUNK_VERIFY_DUMPS") == "1"

Converter = Callable[[Any], Any]


def _text(value):
    return value if value is None or type(value) is str else str(value)


def _float(value):
    return None if value is None else float(value)


def _integer(value):
    return None if value is None else int(value)


def _timestamp(value):
    return None if value is None else format_timestamp(value)


def _uuid(value):
    return None if value is None else str(value)


def _mapping(value):
    return None if value is None else dict(value)


def _identity(value):
    return value


# The converters above as expressions of ``v``, written into the generated dumpers so that a
# field costs no call of its own (23 fields of an order were 23 Python calls per row).
INLINE = {
    _text: "v if v is None or type(v) is str else str(v)",
    _float: "None if v is None else float(v)",
    _integer: "None if v is None else int(v)",
    _timestamp: "None if v is None else format_timestamp(v)",
    _uuid: "None if v is None else str(v)",
    _mapping: "None if v is None else dict(v)",
    _identity: "v",
}


def _same(field: fields.Field, owner: type) -> bool:
    """The field serialises exactly like ``owner`` (it does not override ``_serialize``)."""
    return isinstance(field, owner) and type(field)._serialize is owner._serialize


def _converter(field: fields.Field) -> Converter | None:
    """A function of the value giving ``field._serialize(value)``; None if not known here."""
    if _same(field, Timestamp):
        return _timestamp
    if _same(field, Uuid):
        return _uuid
    if _same(field, fields.String):
        return _text
    if _same(field, fields.Float) and not field.as_string:
        return _float
    if _same(field, fields.Integer) and not field.as_string:
        return _integer
    if type(field)._serialize is fields.Field._serialize:  # Boolean, Raw: the value as it is
        return _identity
    if _same(field, fields.Dict) and field.key_field is None and field.value_field is None:
        return _mapping
    if _same(field, fields.Nested):
        nested = field.schema
        dump = compile_schema(nested, many=bool(nested.many or field.many))
        return lambda value: None if value is None else dump(value)
    if _same(field, fields.List):
        inner = _converter(field.inner)
        if inner is None:
            inner_field = field.inner

            def inner(value):
                return inner_field._serialize(value, None, None)

        def each(values):
            return None if values is None else [inner(value) for value in values]

        return each
    return None


def compile_schema(schema: Schema, *, many: bool | None = None) -> Callable[[Any], Any]:
    """A function dumping an object (or a list of them when ``many``) like ``schema.dump``."""
    many = schema.many if many is None else many
    has_dump_hooks = any(fns for tag, fns in schema._hooks.items() if "dump" in str(tag))
    if has_dump_hooks or type(schema).get_attribute is not Schema.get_attribute:
        original = Schema.dump.__get__(schema)
        return lambda obj: original(obj, many=many)
    steps = []
    for name, field in schema.dump_fields.items():
        key = field.data_key if field.data_key is not None else name
        attribute = field.attribute if field.attribute is not None else name
        plain = "." not in attribute and field.dump_default is missing and field._CHECK_ATTRIBUTE
        steps.append((key, attribute, _converter(field) if plain else None, field, name))
    dump_one = _generated_dumper(type(schema).__name__, steps, schema.get_attribute)

    if many:
        return lambda objs: dump_one(objs) if objs is None else [dump_one(obj) for obj in objs]
    return dump_one


def _generated_dumper(schema_name: str, steps: list, accessor) -> Callable[[Any], dict]:
    """The function reading every step's attribute of an object (by key from a row dict, else
    by attribute) and converting it, generated as straight-line Python: one statement per
    field, the known converters inline. Only ``repr`` of the schema's own names is written
    into the source; converters and fields are passed in as named constants."""
    lines = [
        "def dump_one(obj):",
        "    read = obj.get if type(obj) is dict else partial(getattr, obj)",
        "    out = {}",
    ]
    constants = {"partial": functools.partial, "missing": missing, "accessor": accessor,
                 "format_timestamp": format_timestamp}  # fmt: skip
    for index, (key, attribute, convert, field, name) in enumerate(steps):
        if convert is None:  # marshmallow serialises it, as dump would
            constants[f"field_{index}"] = field
            lines.append(f"    v = field_{index}.serialize({name!r}, obj, accessor=accessor)")
            lines.append(f"    if v is not missing: out[{key!r}] = v")
            continue
        expression = INLINE.get(convert)
        if expression is None:
            constants[f"convert_{index}"] = convert
            expression = f"convert_{index}(v)"
        lines.append(f"    v = read({attribute!r}, missing)")
        lines.append(f"    if v is not missing: out[{key!r}] = {expression}")
    lines.append("    return out")
    namespace: dict = {}
    exec(compile("\n".join(lines), f"<dump {schema_name}>", "exec"), constants, namespace)
    return namespace["dump_one"]


class CompiledDump:
    """Stands in for ``schema.dump`` on a response schema instance."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.compiled = compile_schema(schema)

    def __call__(self, obj, *, many: bool | None = None):
        if many is not None and many != self.schema.many:
            return Schema.dump(self.schema, obj, many=many)
        result = self.compiled(obj)
        if VERIFY:
            expected = Schema.dump(self.schema, obj)
            if result != expected:
                raise AssertionError(
                    f"{type(self.schema).__name__}: compiled dump {result!r} != {expected!r}"
                )
        return result


def use_compiled_dump(schema: Schema) -> Schema:
    """Make ``schema.dump`` the compiled dumper (this instance only); returns the schema."""
    schema.dump = CompiledDump(schema)
    return schema
