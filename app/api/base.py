"""Blueprint/Api/parser classes wired to the spec's error envelope and exact decimal JSON."""

from __future__ import annotations

import json
from decimal import Decimal

from flask import current_app
from flask_smorest import Api, Blueprint
from webargs import core
from webargs.flaskparser import FlaskParser

from app.errors import InvalidInput
from app.schemas.common import ErrorSchema
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
        if not raw.strip():
            return core.missing
        # parse_float=Decimal keeps 0.1 as exactly 0.1 on its way to a NUMERIC column.
        return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)

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


class RestApi(Api):
    """flask-smorest Api documenting our error envelope instead of its default one."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        # Errors are rendered by app.api.errors, registered by create_app.
        return None


def settings() -> Settings:
    """The Settings of the running app."""
    return current_app.extensions["cryptofunk"]["settings"]
