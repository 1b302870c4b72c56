"""Fuzzing the API against its own OpenAPI schema (drf-spectacular) with schemathesis.

Every operation of /api/schema/ gets generated requests, as alice with her token, through the
WSGI app in-process: valid-per-schema data and data that breaks the schema. Each response must
be no server error and must match the schema (status codes, content type, headers, body).
Bounded: a fixed number of examples per operation, derandomized so CI runs the same cases.
Some generated paths carry alice's real ids, so the success responses are checked too.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import get_or_create_api_token
from generation.models import GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory
from tests.reliability.routes import png_bytes
from tests.reliability.support import report
from tests.twins.images import image_bytes, upload
from twins import services as twin_services

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))  # per operation and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def known_ids(alice, settings, monkeypatch) -> dict[str, list[int]]:
    """Alice's objects, so fuzzed paths hit real rows (and their 200s get checked) as well as 404s."""
    settings.GENERATION_MAX_CONCURRENT_JOBS = 10_000
    settings.GENERATION_MAX_IMAGES_PER_DAY = 100_000
    from rest_framework.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "100000/min", "token": "100000/min"})
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)  # nothing leaves the test
    twin = TwinFactory(owner=alice, ready=True)
    twin.reference_face.save("reference.png", ContentFile(png_bytes()), save=True)
    selfie = twin_services.add_selfies(twin=twin, uploads=[upload("a.jpg", image_bytes())]).accepted[0].selfie
    draft = TwinFactory(owner=alice)
    job = GenerationJobFactory(twin=twin, owner=alice, status=GenerationJob.Status.SUCCEEDED, num_images=1)
    image = GeneratedImage(job=job, index=0, seed=job.seed, identity_score=0.5, width=64, height=64)
    image.file.save(image.filename, ContentFile(png_bytes()), save=True)
    queued = GenerationJobFactory(twin=twin, owner=alice)
    return {
        "twin_id": [twin.pk, draft.pk],
        "selfie_id": [selfie.pk],
        "pk": [job.pk, queued.pk],
        "number": [1],
        "job_id": [str(job.pk), f"twin-{twin.pk}"],
        "filename": ["avatar_001.png"],
    }


def _with_known_ids(strategy: st.SearchStrategy, known: dict[str, list[int]]) -> st.SearchStrategy:
    """Half the time, put alice's real ids into the generated path."""

    def swap(case, use_known: bool):
        if use_known and case.path_parameters:
            for name in case.path_parameters:
                if name in known:
                    case.path_parameters[name] = known[name][0]
        return case

    return st.builds(swap, strategy, st.booleans())


@pytest.fixture
def application():
    """The project's WSGI app, called in-process inside the test's transaction. Like Django's test
    client, keep Django from closing the connection at each request (that would end the transaction)."""
    from django.core import signals
    from django.db import close_old_connections

    from twinsite.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield application
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_the_api_matches_its_schema_under_fuzzing(application, alice, known_ids, media_root):
    token = f"Token {get_or_create_api_token(user=alice).key}"
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    ran: dict[str, int] = {}
    failures: list[str] = []
    unbreakable: list[str] = []

    def fuzz(operation, mode: GenerationMode, label: str):
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=_with_known_ids(operation.as_strategy(generation_mode=mode), known_ids))
        def run(case) -> None:
            ran[label] = ran.get(label, 0) + 1
            response = case.call(headers={"Authorization": token})
            case.validate_response(response, checks=CHECKS, headers={"Authorization": token})

        return run

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
            try:
                fuzz(operation, mode, label)()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE, label
                unbreakable.append(label)  # nothing in it can break the schema (no input, or free-form strings)
            except (Exception, BaseExceptionGroup) as exc:  # report every operation that fails, not just the first
                failures.append(f"{label}: {str(exc)[:1500]}")

    total = sum(ran.values())
    report(
        f"[schemathesis] operations: {len(operations)}, cases run: {total} ({EXAMPLES} per operation and mode; "
        f"{len(unbreakable)} operations take no input a negative case could break), failures: {len(failures)}"
    )
    assert not failures, "\n\n".join(failures)
