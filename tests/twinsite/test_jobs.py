"""The one job machinery, on both kinds of job: claim once, leave a live job alone, restart a dead one, reap."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from generation.models import GenerationJob
from generation.services import GENERATION
from tests.factories import GenerationJobFactory, TwinFactory
from twins.models import Twin
from twins.services import ENROLLMENT
from twinsite import jobs

pytestmark = pytest.mark.django_db(transaction=True)  # the reaper queues on commit


@pytest.fixture(params=["generation", "enrollment"])
def job(request, alice):
    if request.param == "generation":
        return GENERATION, GenerationJobFactory(twin=TwinFactory(owner=alice, ready=True))
    return ENROLLMENT, TwinFactory(owner=alice, status=Twin.Status.ENROLLING)


def _start(kind: jobs.JobKind) -> dict:
    # What each service sets on the winning claim: a generation moves to running, a twin stays enrolling.
    return {"status": GenerationJob.Status.RUNNING} if kind is GENERATION else {}


def _attempts(kind: jobs.JobKind, row) -> int:
    return kind.model.objects.values_list(kind.attempts_field, flat=True).get(pk=row.pk)


def _silence(kind: jobs.JobKind, row, seconds: float) -> None:
    kind.model.objects.filter(pk=row.pk).update(**{kind.heartbeat_field: timezone.now() - timedelta(seconds=seconds)})


def test_the_first_delivery_wins_and_a_duplicate_finds_it_alive(job):
    kind, row = job
    assert jobs.claim(kind, row.pk) == 1
    assert jobs.claim(kind, row.pk) is None  # the same task delivered twice while the first runs
    assert _attempts(kind, row) == 1


def test_a_job_whose_worker_went_silent_is_taken_again_and_counted(job, settings):
    kind, row = job
    assert jobs.claim(kind, row.pk) == 1
    _silence(kind, row, kind.stale_after_s() + 5)
    assert jobs.claim(kind, row.pk) == 2
    assert jobs.claim(kind, row.pk) is None  # its new heartbeat is fresh
    assert _attempts(kind, row) == 2


def test_a_heartbeat_keeps_a_job_alive_and_says_when_it_is_gone(job):
    kind, row = job
    jobs.claim(kind, row.pk)
    _silence(kind, row, kind.stale_after_s() + 5)
    assert jobs.heartbeat(kind, row.pk) is True
    assert jobs.claim(kind, row.pk) is None
    kind.model.objects.filter(pk=row.pk).delete()
    assert jobs.heartbeat(kind, row.pk) is False  # erased mid-run: the worker stops quietly


def test_the_reaper_queues_only_silent_started_jobs(job):
    kind, row = job
    jobs.claim(kind, row.pk, start=_start(kind))
    assert jobs.reap_stale(kind) == 0  # alive
    _silence(kind, row, kind.stale_after_s() + 5)
    assert jobs.reap_stale(kind) == 1
    queued = [task for task in OrmQ.objects.all() if task.func() == kind.task_path]
    assert [task.task["args"] for task in queued] == [(row.pk,)]
    assert queued[0].name() == f"{kind.task_label}-{row.pk}-reaped"


def test_a_finished_job_is_never_claimed():
    job = GenerationJobFactory(status=GenerationJob.Status.SUCCEEDED)
    assert jobs.claim(GENERATION, job.pk) is None
