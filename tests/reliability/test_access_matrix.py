"""The two-user access matrix over every route: web pages, API, the old product's routes, downloads, admin.

Alice owns a ready twin (a selfie, a reference face), a finished generation with an image. Bob,
another signed-in user, tries every route on each of her objects with every method the route
takes, by token and by session: always 404, and afterwards nothing of hers changed. Staff read her
objects but every change outside the admin answers 403, twins and generations alike. Anonymous gets
401 (API) or a redirect to the login page (pages, admin); non-staff get no admin. Alice herself
reads each object route (so a 404 means "not yours", not "broken URL"). A route added to the
project without a row here fails `test_every_route_is_in_the_matrix`.
"""

from __future__ import annotations

from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from generation.models import GenerationJob
from tests.reliability.routes import (
    BODY_ROUTES,
    OBJECT_ROUTES,
    OPERATOR_ROUTES,
    OWN_ROUTES,
    PUBLIC_ROUTES,
    SECRET_NAME,
    SECRET_PROMPT,
    World,
    call,
    clients,
    snapshot,
)
from tests.reliability.support import report
from twins.models import Selfie, Twin


def _named_routes() -> set[str]:
    names: set[str] = set()

    def walk(resolver: URLResolver) -> None:
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace != "admin":
                    walk(pattern)
            elif isinstance(pattern, URLPattern):
                assert pattern.name, f"unnamed route {pattern.pattern}: name it so the matrix can cover it"
                names.add(pattern.name)

    walk(get_resolver())
    return names


def test_every_route_is_in_the_matrix():
    covered = {r.name for r in OBJECT_ROUTES + OWN_ROUTES} | {name for name, _ in BODY_ROUTES}
    covered |= PUBLIC_ROUTES | set(OPERATOR_ROUTES)
    missing = _named_routes() - covered
    assert not missing, f"routes with no access rule in the matrix: {sorted(missing)}"


def test_another_user_can_touch_nothing_of_alices(world, alice, bob, media_root):
    before = snapshot(world)
    files_before = sorted(p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file())
    cells, failures = 0, []
    for route in OBJECT_ROUTES:
        url = reverse(route.name, kwargs=route.kwargs(world))
        modes = ("token", "session") if route.kind == "api" else ("session",)
        for mode in modes:
            client = clients(bob)[mode]
            for method, data in route.calls:
                response = call(client, method, url, data, route.kind)
                cells += 1
                if response.status_code != 404 or SECRET_NAME.encode() in response.content:
                    failures.append((route.name, mode, method, response.status_code))
    for name, payload in BODY_ROUTES:
        for mode in ("token", "session"):
            body = {k: (world.twin.pk if v == "TWIN" else v) for k, v in payload.items()}
            response = clients(bob)[mode].post(reverse(name), body, format="json")
            cells += 1
            if response.status_code != 404:
                failures.append((name, mode, "post", response.status_code))
    # A generation job id under the old routes, too.
    response = clients(bob)["token"].get(reverse("compat-status", kwargs={"job_id": str(world.job.pk)}))
    cells += 1
    if response.status_code != 404:
        failures.append(("compat-status(generation)", "token", "get", response.status_code))

    report(f"[access matrix] stranger cells checked: {cells}")
    assert failures == []
    assert snapshot(world) == before
    files_after = sorted(p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file())
    assert [f for f in files_after if str(world.twin.storage_key) in f] == [
        f for f in files_before if str(world.twin.storage_key) in f
    ]


def test_staff_read_alices_objects_but_change_none_outside_the_admin(world, charlie, media_root):
    # Every change route, by token and by session: staff get Route.staff_change_status (403) and
    # nothing of alice's changes; the admin is where support changes other people's data.
    before = snapshot(world)
    files_before = sorted(p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file())
    cells, failures = 0, []
    for route in OBJECT_ROUTES:
        url = reverse(route.name, kwargs=route.kwargs(world))
        for mode in ("token", "session") if route.kind == "api" else ("session",):
            for method, data in route.calls:
                if method == "get":
                    continue
                response = call(clients(charlie)[mode], method, url, data, route.kind)
                cells += 1
                if response.status_code != route.staff_change_status:
                    failures.append((route.name, mode, method, response.status_code))
    report(f"[access matrix] staff change cells checked: {cells}")
    assert failures == []
    assert snapshot(world) == before
    files_after = sorted(p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file())
    assert files_after == files_before


def test_alice_reaches_each_of_her_objects(world, alice):
    # The positive control: the same URLs answer their owner.
    cells = 0
    for route in OBJECT_ROUTES:
        if route.owner_status is None:
            continue
        url = reverse(route.name, kwargs=route.kwargs(world))
        for mode in ("token", "session") if route.kind == "api" else ("session",):
            response = clients(alice)[mode].get(url)
            cells += 1
            assert response.status_code == route.owner_status, (route.name, mode, response.status_code)
    report(f"[access matrix] owner cells checked: {cells}")


def test_lists_and_own_pages_show_nothing_of_alices(world, bob):
    cells = 0
    for route in OWN_ROUTES:
        url = reverse(route.name, kwargs=route.kwargs(world))
        for mode in ("token", "session") if route.kind == "api" else ("session",):
            for method, data in route.calls:
                response = call(clients(bob)[mode], method, url, data, route.kind)
                cells += 1
                assert response.status_code < 500, (route.name, mode, method, response.status_code)
                for secret in (SECRET_NAME, SECRET_PROMPT, world.token):
                    assert secret.encode() not in response.content, (route.name, mode, method, secret)
    report(f"[access matrix] own-data cells checked: {cells}")


def test_anonymous_gets_401_or_the_login_page(world):
    cells = 0
    anonymous = APIClient()
    for route in OBJECT_ROUTES + OWN_ROUTES:
        url = reverse(route.name, kwargs=route.kwargs(world))
        for method, data in route.calls:
            response = call(anonymous, method, url, data, route.kind)
            cells += 1
            if route.kind == "api":
                assert response.status_code == 401, (route.name, method, response.status_code)
                assert response.json()["error"]["code"] == "not_authenticated"
            else:
                assert response.status_code == 302, (route.name, method, response.status_code)
                assert response["Location"].startswith(reverse("login")), (route.name, response["Location"])
    for name in OPERATOR_ROUTES:
        response = anonymous.get(reverse(name))
        cells += 1
        assert response.status_code == 401, (name, response.status_code)
    report(f"[access matrix] anonymous cells checked: {cells}")
    assert snapshot(world)["twin"]["name"] == SECRET_NAME


def test_operator_routes_are_for_staff(world, bob, charlie):
    for name, policy in OPERATOR_ROUTES.items():
        bob_session = clients(bob)["session"]
        assert bob_session.get(reverse(name)).status_code == 403, name
        assert clients(charlie)["session"].get(reverse(name)).status_code == 200, name
        by_token = clients(bob)["token"].get(reverse(name))
        assert by_token.status_code in ((200,) if policy == "staff-or-token" else (401, 403)), name
        assert SECRET_NAME.encode() not in by_token.content
    report(f"[access matrix] operator cells checked: {3 * len(OPERATOR_ROUTES)}")


def _admin_urls(world: World) -> list[str]:
    objects = {Twin: world.twin, Selfie: world.selfie, GenerationJob: world.job}
    urls = [reverse("admin:index"), reverse("admin:password_change")]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
        obj = objects.get(model) or model._default_manager.first()
        if obj is not None:
            for view in ("change", "delete", "history"):
                urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk]))
    return urls


def test_non_staff_get_no_admin(world, bob, charlie):
    urls = _admin_urls(world)
    assert len(urls) >= 15
    cells = 0
    for who in ("anonymous", "bob"):
        client = Client()
        if who == "bob":
            client.force_login(bob)
        for url in urls:
            for method in ("get", "post"):
                response = getattr(client, method)(url)
                cells += 1
                assert response.status_code == 302, (who, method, url, response.status_code)
                assert response["Location"].startswith(reverse("admin:login")), (who, url)
    staff = Client()
    staff.force_login(charlie)
    for url in urls:
        assert staff.get(url).status_code in (200, 403), url  # 403: adding twins/jobs is switched off
        cells += 1
    report(f"[access matrix] admin cells checked: {cells}")
    assert Twin.objects.filter(pk=world.twin.pk, name=SECRET_NAME).exists()
