"""Property-based conformance: schemathesis generates requests from /api/v1/openapi.json and the
answers must match the document (no 5xx, every status, body and content type as declared).

Auth is on: the requests carry the run's admin key, whose limits they do not reach. Each
operation gets a seeded hypothesis run of its own. (schemathesis' lazy pytest fixture does not
work with pytest 9, so operations are driven directly.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 30
MIN_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def exercise(operation, admin_key: str) -> list[int]:
    """A seeded hypothesis run over one operation; the statuses it got."""
    answered: list[int] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # seeded: the same requests on every run
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        response = case.call_and_validate(headers={"X-API-Key": admin_key}, checks=CHECKS)
        answered.append(response.status_code)

    run()
    return answered


def test_every_operation_answers_as_documented(app, admin_key, listener_up):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    statuses = {
        operation.label: exercise(operation, admin_key)
        for operation in (result.ok() for result in schema.get_all_operations())
    }
    sent = [status for answered in statuses.values() for status in answered]
    print({label: sorted(set(answered)) for label, answered in statuses.items()}, len(sent))
    assert len(statuses) >= 39
    assert len(sent) >= MIN_REQUESTS, len(sent)
    assert not [status for status in sent if status >= 500]


def test_schemathesis_agrees_with_our_pins():
    """Our pins (hypothesis, pytest, requests...) satisfy what schemathesis declares it needs."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    from app.settings import PROJECT_ROOT

    pinned = {}
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.strip().lower()] = version.strip()
    checked = []
    for text in requires("schemathesis"):
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        if requirement.name.lower() in pinned:
            assert requirement.specifier.contains(pinned[requirement.name.lower()]), requirement
            checked.append(requirement.name.lower())
    assert {"hypothesis", "pytest", "requests"} <= set(checked)
