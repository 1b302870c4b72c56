"""Dashboard pages. Thin: parse the form, call a service or selector, render or redirect.

The twin page's live parts (drag-and-drop upload, progress) talk to the JSON API from
static/js/twins.js with the session cookie; the forms here are the no-JavaScript path.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from generation import selectors as generation_selectors
from twins import selectors, services
from twins.forms import TwinNameForm
from twins.http import uploaded_files
from twins.models import Selfie, Twin
from twinsite.errors import TwinsiteError


def _guide() -> dict[str, int]:
    return {"min_photos": settings.TWIN_MIN_PHOTOS, "max_photos": settings.TWIN_MAX_PHOTOS}


def _render_dashboard(request: HttpRequest, form: TwinNameForm, *, status: int = 200) -> HttpResponse:
    context = {"twins": selectors.twins_for_owner(owner=request.user), "form": form, "nav": "twins", **_guide()}
    return render(request, "twins/dashboard.html", context, status=status)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return _render_dashboard(request, TwinNameForm())


@login_required
@require_POST
def twin_create(request: HttpRequest) -> HttpResponse:
    form = TwinNameForm(request.POST)
    if form.is_valid():
        try:
            twin = services.create_twin(owner=request.user, name=form.cleaned_data["name"])
        except TwinsiteError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, f"“{twin.name}” is ready for photos. Add {settings.TWIN_MIN_PHOTOS} or more.")
            return redirect("twin-detail", twin_id=twin.pk)
    return _render_dashboard(request, form, status=400)


@login_required
def twin_detail(request: HttpRequest, twin_id: int) -> HttpResponse:
    twin = selectors.get_twin(user=request.user, twin_id=twin_id)
    selfies = list(selectors.selfies_of(twin=twin))
    stalled = services.enrollment_stalled(twin)
    pending = sum(1 for s in selfies if s.status == Selfie.Status.PENDING)
    can_change = twin.owner_id == request.user.pk
    context = {
        "twin": twin,
        "status_message": services.enrollment_status_message(twin),
        "selfies": selfies,
        "selfie_groups": _selfie_groups(twin, selfies),
        "can_change": can_change,
        "stalled": stalled,
        "next_step": services.enrollment_next_step(twin, stalled=stalled, pending=pending),
        "rename_form": TwinNameForm(initial={"name": twin.name}),
        "api_url": reverse("api-twin-detail", kwargs={"twin_id": twin.pk}),
        "upload_url": reverse("api-twin-selfies", kwargs={"twin_id": twin.pk}),
        "enroll_url": reverse("api-twin-enroll", kwargs={"twin_id": twin.pk}),
        # For the generate panel (generation_tags.generate_panel), which does not query itself.
        "recent_jobs": generation_selectors.recent_jobs_of(twin=twin),
        "generation_usage": generation_selectors.usage_of(user=twin.owner) if can_change and twin.is_ready else None,
        "nav": "twins",
        **_guide(),
    }
    return render(request, "twins/twin_detail.html", context)


def _selfie_groups(twin: Twin, selfies: list[Selfie]) -> list[tuple[str, list[tuple[int, Selfie]]]]:
    """The twin page lists photos by verdict, refused first (they need a decision), in upload order
    while an enrollment runs (the order they are checked in, so progress can mark them one by one)."""
    numbered = list(enumerate(selfies, start=1))  # "Selfie 3" in the alt text: its place in upload order
    if twin.status == Twin.Status.ENROLLING:
        return [("all", numbered)]
    order = (Selfie.Status.REJECTED, Selfie.Status.PENDING, Selfie.Status.ACCEPTED)
    return [(status, group) for status in order if (group := [(n, s) for n, s in numbered if s.status == status])]


def _back(twin_id: int) -> HttpResponse:
    return redirect("twin-detail", twin_id=twin_id)


@login_required
@require_POST
def twin_rename(request: HttpRequest, twin_id: int) -> HttpResponse:
    twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
    form = TwinNameForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the twin a name of at most 100 characters.")
        return _back(twin.pk)
    try:
        services.rename_twin(twin=twin, name=form.cleaned_data["name"])
    except TwinsiteError as exc:
        messages.error(request, exc.message)
    return _back(twin.pk)


@login_required
@require_POST
def twin_upload(request: HttpRequest, twin_id: int) -> HttpResponse:
    twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
    try:
        result = services.add_selfies(twin=twin, uploads=uploaded_files(request))
    except services.SelfiesRefused as exc:
        messages.error(request, exc.message + " " + " ".join(exc.fields["files"]))
        return _back(twin.pk)
    except TwinsiteError as exc:
        messages.error(request, exc.message)
        return _back(twin.pk)
    count = len(result.accepted)
    messages.success(request, f"{count} photo{'s' if count != 1 else ''} added.")
    for outcome in result.refused:
        messages.warning(request, f"{outcome.name}: {outcome.refusal.message}")
    return _back(twin.pk)


@login_required
@require_POST
def twin_enroll(request: HttpRequest, twin_id: int) -> HttpResponse:
    twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
    try:
        services.start_enrollment(twin=twin)
    except TwinsiteError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, "Enrollment started: every photo is being checked.")
    return _back(twin.pk)


@login_required
@require_POST
def twin_delete(request: HttpRequest, twin_id: int) -> HttpResponse:
    twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
    name = twin.name
    services.delete_twin(twin=twin)
    messages.success(request, f"“{name}” was erased with all its photos and generated images.")
    return redirect("dashboard")


@login_required
@require_POST
def selfie_delete(request: HttpRequest, twin_id: int, selfie_id: int) -> HttpResponse:
    selfie = selectors.get_selfie(user=request.user, twin_id=twin_id, selfie_id=selfie_id, for_change=True)
    try:
        services.delete_selfie(selfie=selfie)
    except TwinsiteError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Photo removed.")
    return _back(twin_id)
