"""Support staff's view of generation jobs: the one place they change other people's generations
(the dashboard and API let staff read them only). Every change goes through generation.services
and lands in the admin's change log: Django logs the deletes, the actions below log themselves.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from generation import services
from generation.models import GeneratedImage, GenerationJob
from twinsite.errors import TwinsiteError


class GeneratedImageInline(admin.TabularInline):
    model = GeneratedImage
    extra = 0
    can_delete = False
    fields = ("preview", "index", "seed", "identity_score", "score_note", "width", "height")
    readonly_fields = fields

    @admin.display(description="Image")
    def preview(self, image: GeneratedImage) -> str:
        url = reverse("generation-image", kwargs={"pk": image.job_id, "number": image.index + 1})
        return format_html('<a href="{0}"><img src="{0}" class="admin-image" alt=""></a>', url)

    def has_add_permission(self, request: HttpRequest, obj: GenerationJob | None = None) -> bool:
        return False


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "twin", "status", "num_images", "progress", "attempts", "created_at", "finished_at")
    list_filter = ("status", "backend", "owner")
    search_fields = ("prompt", "owner__username", "twin__name")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "twin")
    readonly_fields = [f.name for f in GenerationJob._meta.fields]
    inlines = [GeneratedImageInline]
    actions = ["cancel_jobs", "rerun_jobs"]

    @admin.display(description="Progress")
    def progress(self, job: GenerationJob) -> str:
        return f"{job.progress_step}/{job.progress_total or job.steps}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: GenerationJob) -> None:
        services.delete_generation(job=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        for job in queryset:
            services.delete_generation(job=job)

    @admin.action(description="Cancel selected generations")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        done = 0
        for job in queryset:
            try:
                services.cancel_generation(job=job)
                self.log_change(request, job, "Cancelled from the admin.")
                done += 1
            except TwinsiteError as exc:
                self.message_user(request, f"Job {job.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Cancelling {done} generation(s).")

    @admin.action(description="Run selected generations again (same seed)")
    def rerun_jobs(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        for job in queryset:
            try:
                new_job = services.rerun_generation(job=job)
                self.log_change(request, job, f"Run again from the admin as job {new_job.pk}.")
                self.log_addition(request, new_job, f"Run again from the admin, from job {job.pk}.")
                self.message_user(request, f"Job {job.pk} queued again as job {new_job.pk}.")
            except TwinsiteError as exc:
                self.message_user(request, f"Job {job.pk}: {exc.message}", messages.WARNING)
