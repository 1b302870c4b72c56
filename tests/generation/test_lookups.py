"""Generation runs only on the caller's own twin (404 for anyone else's, staff too), and the twin page's
generate panel gets its data from the view: the template tag itself never queries."""

from __future__ import annotations

import pytest
from django.template import Context, Template
from django.test import Client

from generation.models import GenerationJob
from generation.selectors import recent_jobs_of
from tests.factories import GenerationJobFactory, TwinFactory


@pytest.fixture
def twin(alice):
    return TwinFactory(owner=alice, ready=True)


def _session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_staff_cannot_generate_on_someone_elses_twin(api_charlie, charlie, twin):
    response = api_charlie.post("/api/generations/", {"twin": twin.pk, "prompt": "portrait"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    page = _session(charlie)
    assert page.post(f"/twins/{twin.pk}/generate/", {"prompt": "portrait"}).status_code == 404
    assert page.get(f"/twins/{twin.pk}/generate/new/").status_code == 404
    assert not GenerationJob.objects.exists()


def test_generate_more_like_this_copies_only_your_own_job(charlie, twin):
    job = GenerationJobFactory(twin=twin)
    own = TwinFactory(owner=charlie, ready=True)
    assert _session(charlie).get(f"/twins/{own.pk}/generate/new/?from={job.pk}").status_code == 404


def test_twin_page_shows_recent_jobs_and_the_quota(client, alice, charlie, twin):
    job = GenerationJobFactory(twin=twin, prompt="in a sunflower field")
    client.force_login(alice)
    page = client.get(f"/twins/{twin.pk}/").content.decode()
    assert f"/generations/{job.pk}/" in page and "in a sunflower field" in page
    assert 'id="quota-hint"' in page
    staff_page = _session(charlie).get(f"/twins/{twin.pk}/").content.decode()
    assert f"/generations/{job.pk}/" in staff_page  # staff see the jobs, but get no form and no quota of theirs
    assert 'id="quota-hint"' not in staff_page


def test_generate_panel_tag_makes_no_query(django_assert_num_queries, alice, twin):
    GenerationJobFactory(twin=twin, prompt="on a beach")
    recent = recent_jobs_of(twin=twin)
    template = Template("{% load generation_tags %}{% generate_panel twin %}")
    with django_assert_num_queries(0):
        html = template.render(Context({"twin": twin, "recent_jobs": recent, "can_change": False}))
    assert "on a beach" in html
