"""Blueprint/Api/parser classes wired to the spec's error envelope and exact decimal JSON."""

from __future__ import annotations

import functools
import json
from decimal import Decimal

from flask import Response, current_app
from flask_smorest import Api, Blueprint
from flask_smorest.utils import (
    resolve_schema_instance,
    set_status_and_headers_in_response,
    unpack_tuple_response,
)
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import RequestEntityTooLarge

from app.api.json_provider import json_response
from app.errors import InvalidInput
from app.schemas.common import ErrorSchema
from app.schemas.dumping import use_compiled_dump
from app.settings import Settings

BODY_LOCATIONS = ("json", "form", "json_or_form")


class RequestValidationError(InvalidInput):
    """A schema rejected the request; carries the first failing field and every message."""

    def __init__(self, messages: dict, location: str):
        field, message = _first_error(messages)
        if field and message == f"invalid {field} format":
            super().__init__(message, field=field)
        else:
            error = (
                "invalid request body" if location in BODY_LOCATIONS else "invalid query parameter"
            )
            if field == "_schema" or field is None:
                field = None
                if message == "Invalid input type.":
                    message = "the body must be a JSON object"
            super().__init__(error, details=message, field=field)
        self.messages = messages


def _first_error(messages, prefix: str = "") -> tuple[str | None, str]:
    """Depth-first first (dotted field path, message) in a marshmallow error dict."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix and key != "_schema" else (prefix or str(key))
            return _first_error(value, path)
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], prefix)
    return (prefix or None), str(messages)


def refuse_truncated_chunked_body(req, raw: bytes) -> None:
    """A chunked body (no Content-Length) is read only up to MAX_CONTENT_LENGTH; if more was
    sent, refuse it (413) instead of acting on a silently cut body."""
    limit = req.max_content_length
    at_limit = req.content_length is None and limit is not None and len(raw) >= limit
    if at_limit and req.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def refuse_unstorable_text(value, path: str = "") -> None:
    """Text PostgreSQL cannot store (a NUL character, a lone UTF-16 surrogate) is a 400 naming
    the field, before anything is written."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(
                "invalid request body", details="text must not contain NUL characters",
                field=path or None,
            )  # fmt: skip
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(
                "invalid request body", details="text must be valid Unicode (a lone surrogate "
                "is not)", field=path or None,
            ) from None  # fmt: skip
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_unstorable_text(key, path)
            refuse_unstorable_text(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            refuse_unstorable_text(item, f"{path}.{index}" if path else str(index))


def _reject_constant(name: str):
    raise InvalidInput(
        "malformed JSON",
        details=f"{name} is not a valid JSON number; send a finite number",
    )


class ApiParser(FlaskParser):
    """webargs parser: 400 instead of 422, unknown query args refused, floats parsed exactly."""

    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": "raise",
        "querystring": "raise",
    }

    def _raw_load_json(self, req):
        if not core.is_json(req.mimetype):
            return core.missing
        raw = req.get_data(cache=True)
        refuse_truncated_chunked_body(req, raw)
        if not raw.strip():
            return core.missing
        try:
            # parse_float=Decimal keeps 0.1 as exactly 0.1 on its way to a NUMERIC column.
            body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        except RecursionError:
            raise InvalidInput("malformed JSON", details="the body is nested too deeply") from None
        except json.JSONDecodeError:
            raise
        except ValueError as exc:  # e.g. an integer literal of more than 4,300 digits
            raise InvalidInput("malformed JSON", details=str(exc)) from None
        refuse_unstorable_text(body)
        return body

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        raise InvalidInput("malformed JSON", details=str(error))

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        messages = error.messages
        location = "json"
        if isinstance(messages, dict) and len(messages) == 1:
            (only,) = messages
            if only in self.__location_map__:
                location, messages = only, messages[only]
        raise RequestValidationError(messages, location)


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = ApiParser()

    def arguments(self, schema, **kwargs):
        """flask-smorest's arguments with one schema instance (webargs would build one per
        request from a class)."""
        return super().arguments(resolve_schema_instance(schema), **kwargs)

    def response(self, status_code, schema=None, **kwargs):
        """flask-smorest's response documentation, with a lean wrapper doing what its wrapper
        does for our views: dump with the schema compiled to a plain function, write the JSON,
        apply the status (and a view's own status or headers when it returns a tuple)."""
        if schema is not None:
            schema = use_compiled_dump(resolve_schema_instance(schema))
        document = super().response(status_code, schema, **kwargs)
        dump = schema.dump if schema is not None else None

        def decorate(view):
            @functools.wraps(view)
            def respond(*args, **kwargs):
                result = view(*args, **kwargs)
                if type(result) is tuple:  # a view's own status or headers (flask-smorest's)
                    result, status, headers = unpack_tuple_response(result)
                else:
                    status = headers = None
                if isinstance(result, Response):
                    set_status_and_headers_in_response(result, status, headers)
                    return result
                response = json_response(dump(result) if dump is not None else result)
                if status_code != 200:
                    response.status_code = status_code
                if status is not None or headers:
                    set_status_and_headers_in_response(response, status, headers)
                return response

            respond.success_status = status_code  # the audit trail records it (app.api.access)
            return _documented_as(document(view), respond)

        return decorate

    def alt_response(self, status_code, *args, **kwargs):
        """flask-smorest's alt_response documentation, without a wrapper around the view."""
        document = super().alt_response(status_code, *args, **kwargs)
        return lambda view: _documented_as(document(view), view)


def _documented_as(documented, view):
    """``view`` carrying the OpenAPI documentation flask-smorest put on its ``documented``
    wrapper (whose only job at request time is to call the view: a layer per decorator)."""
    view._apidoc = documented._apidoc
    return view


class RestApi(Api):
    """flask-smorest Api documenting our error envelope instead of its default one."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        # Errors are rendered by app.api.errors, registered by create_app.
        return None


def settings() -> Settings:
    """The Settings of the running app."""
    return current_app.extensions["cryptofunk"]["settings"]
