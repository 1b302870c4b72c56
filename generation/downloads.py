"""File responses shared by the API, the dashboard and the old product's routes."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpResponse

from generation import services
from generation.models import GenerationJob
from generation.selectors import image_by_number


def image_response(*, job: GenerationJob, number: int, as_attachment: bool = False) -> FileResponse:
    image = image_by_number(job=job, number=number) if job.status == job.Status.SUCCEEDED else None
    if image is None:
        raise Http404("No such image.")
    response = FileResponse(
        image.file.open("rb"), content_type="image/png", as_attachment=as_attachment, filename=image.filename
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


def zip_response(*, job: GenerationJob) -> HttpResponse:
    if job.status != job.Status.SUCCEEDED:
        raise Http404("This generation has no images.")
    response = HttpResponse(services.zip_job_images(job=job), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="twinsite-generation-{job.pk}.zip"'
    return response
