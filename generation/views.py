from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from generation import services
from generation.downloads import image_response, zip_response
from generation.forms import STYLE_PRESETS, GenerateForm
from generation.selectors import (
    get_job,
    get_own_job,
    image_by_number,
    jobs_for_owner,
    queue_position,
    restart_notice,
    usage_of,
)
from twins.selectors import get_own_twin
from twinsite.errors import TwinsiteError


@login_required
@require_POST
def generate(request: HttpRequest, twin_id: int) -> HttpResponse:
    twin = get_own_twin(owner=request.user, twin_id=twin_id)
    form = GenerateForm(request.POST)
    if form.is_valid():
        try:
            job = services.submit_generation(owner=request.user, twin=twin, **form.cleaned_data)
        except TwinsiteError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("generation-detail", pk=job.pk)
    return render(
        request,
        "generation/generate.html",
        {"twin": twin, "form": form, "presets": STYLE_PRESETS, "usage": usage_of(user=request.user), "nav": "twins"},
        status=400,
    )


# The settings "Generate more like this" carries over from an earlier job (?from=<id>); the seed stays random.
_REPEATED_FIELDS = (
    "prompt",
    "negative_prompt",
    "num_images",
    "preset",
    "steps",
    "guidance",
    "identity_strength",
    "face_structure",
    "best_of",
)


@login_required
def new_generation(request: HttpRequest, twin_id: int) -> HttpResponse:
    twin = get_own_twin(owner=request.user, twin_id=twin_id)
    initial = {}
    earlier = request.GET.get("from", "")
    if earlier.isdigit():
        job = get_own_job(owner=request.user, job_id=int(earlier))
        initial = {name: getattr(job, name) for name in _REPEATED_FIELDS}
    return render(
        request,
        "generation/generate.html",
        {
            "twin": twin,
            "form": GenerateForm(initial=initial),
            "presets": STYLE_PRESETS,
            "usage": usage_of(user=request.user),
            "nav": "twins",
        },
    )


@login_required
def history(request: HttpRequest) -> HttpResponse:
    jobs = jobs_for_owner(owner=request.user)
    page = Paginator(jobs, 20).get_page(request.GET.get("page"))
    return render(request, "generation/history.html", {"page": page, "nav": "history"})


@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job(user=request.user, job_id=pk)
    return render(
        request,
        "generation/detail.html",
        {
            "job": job,
            "queue_position": queue_position(job=job),
            "restart_notice": restart_notice(job=job),
            "can_change": job.owner_id == request.user.pk,
            "nav": "history",
        },
    )


@login_required
@require_POST
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job(user=request.user, job_id=pk, for_change=True)
    try:
        job = services.cancel_generation(job=job)
        messages.info(
            request,
            "Cancelled."
            if job.status == job.Status.CANCELLED
            else "Cancelling: the generation stops at its next step.",
        )
    except TwinsiteError as exc:
        messages.warning(request, exc.message)
    return redirect("generation-detail", pk=pk)


@login_required
@require_POST
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job(user=request.user, job_id=pk, for_change=True)
    try:
        services.delete_generation(job=job)
    except TwinsiteError as exc:
        messages.warning(request, exc.message)
        return redirect("generation-detail", pk=pk)
    messages.success(request, "The generation and its images were deleted.")
    return redirect("generation-history")


@login_required
@require_POST
def delete_image(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    job = get_job(user=request.user, job_id=pk, for_change=True)
    image = image_by_number(job=job, number=number)
    if image is None:
        raise Http404("No such image.")
    services.delete_generated_image(image=image)
    messages.success(request, f"{image.filename} was deleted.")
    return redirect("generation-detail", pk=pk)


@login_required
def image(request: HttpRequest, pk: int, number: int) -> FileResponse:
    job = get_job(user=request.user, job_id=pk)
    return image_response(job=job, number=number, as_attachment="download" in request.GET)


@login_required
def download_zip(request: HttpRequest, pk: int) -> HttpResponse:
    return zip_response(job=get_job(user=request.user, job_id=pk))
