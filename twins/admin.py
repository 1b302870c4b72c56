"""Support-staff views of twins and selfies. Every change goes through twins.services.

Django's own bulk delete is switched off: it would drop rows and leave the photos in
storage. Deleting here erases files too (services.delete_twin / delete_selfie).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from twins import services
from twins.models import Selfie, Twin
from twinsite.errors import TwinsiteError

SELFIE_FIELDS = (
    "preview",
    "original_name",
    "status",
    "reason",
    "message",
    "width",
    "height",
    "sha256",
    "face_count",
    "face_box",
    "detector_score",
    "sharpness",
    "brightness",
    "yaw",
    "pitch",
    "similarity",
    "created_at",
    "analyzed_at",
)


def _thumbnail(selfie: Selfie, size: int = 96) -> str:
    url = reverse("twin-selfie-image", kwargs={"twin_id": selfie.twin_id, "selfie_id": selfie.pk}) + "?size=thumb"
    return format_html(
        '<a href="{}"><img src="{}" alt="Selfie {}, full size" width="{}" height="{}" class="admin-thumb"></a>',
        url.replace("?size=thumb", ""),
        url,
        selfie.pk,
        size,
        size,
    )


class SelfieInline(admin.TabularInline):
    model = Selfie
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("preview", "original_name", "status", "reason", "message", "similarity", "sharpness", "yaw", "pitch")
    readonly_fields = fields
    ordering = ("created_at", "id")

    @admin.display(description="Photo")
    def preview(self, selfie: Selfie) -> str:
        return _thumbnail(selfie) if selfie.pk else ""

    def has_add_permission(self, request: HttpRequest, obj: Twin | None = None) -> bool:
        return False


@admin.register(Twin)
class TwinAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "owner",
        "status",
        "accepted_count",
        "photo_count",
        "embedding_model",
        "enrolled_at",
        "created_at",
    )
    list_filter = ("status", "embedding_model")
    search_fields = ("name", "owner__username", "owner__email")
    list_select_related = ("owner",)
    readonly_fields = (
        "owner",
        "status",
        "status_message",
        "reference_preview",
        "photo_count",
        "accepted_count",
        "rejected_count",
        "progress_done",
        "progress_total",
        "enrollment_attempts",
        "embedding_model",
        "embedding_dim",
        "quality_summary",
        "storage_key",
        "created_at",
        "updated_at",
        "enrolled_at",
    )
    fields = ("name", *readonly_fields)
    inlines = [SelfieInline]
    actions = ["rerun_enrollment", "erase_twins"]

    @admin.display(description="Reference face")
    def reference_preview(self, twin: Twin) -> str:
        if not twin.reference_face:
            return "—"
        url = reverse("twin-reference-face", kwargs={"twin_id": twin.pk})
        return format_html('<img src="{}" alt="" width="128" height="128" class="admin-reference">', url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # twins are created by their owners, with their photos

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would leave files behind; "erase_twins" does it properly
        return actions

    def save_model(self, request: HttpRequest, obj: Twin, form: object, change: bool) -> None:
        services.rename_twin(twin=obj, name=obj.name)  # the name is the only editable field

    def delete_model(self, request: HttpRequest, obj: Twin) -> None:
        services.delete_twin(twin=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Twin]) -> None:
        for twin in queryset:
            services.delete_twin(twin=twin)

    @admin.action(description="Re-run enrollment of the selected twins")
    def rerun_enrollment(self, request: HttpRequest, queryset: QuerySet[Twin]) -> None:
        started, refused = 0, []
        for twin in queryset:
            try:
                services.start_enrollment(twin=twin)
                started += 1
            except TwinsiteError as exc:
                refused.append(f"{twin.name}: {exc.message}")
        if started:
            self.message_user(request, f"Enrollment queued for {started} twin(s).", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)

    @admin.action(description="Erase the selected twins (photos, identity, generated images)", permissions=["delete"])
    def erase_twins(self, request: HttpRequest, queryset: QuerySet[Twin]) -> None:
        count = 0
        for twin in queryset:
            services.delete_twin(twin=twin)
            count += 1
        self.message_user(request, f"Erased {count} twin(s) and all their files.", messages.SUCCESS)


@admin.register(Selfie)
class SelfieAdmin(admin.ModelAdmin):
    list_display = ("id", "thumbnail", "twin", "status", "reason", "similarity", "sharpness", "created_at")
    list_filter = ("status", "reason")
    search_fields = ("twin__name", "twin__owner__username", "original_name", "sha256")
    list_select_related = ("twin",)
    readonly_fields = ("twin", *SELFIE_FIELDS)
    fields = readonly_fields

    @admin.display(description="Photo")
    def thumbnail(self, selfie: Selfie) -> str:
        return _thumbnail(selfie, size=48)

    @admin.display(description="Photo")
    def preview(self, selfie: Selfie) -> str:
        return _thumbnail(selfie, size=256)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Selfie | None = None) -> bool:
        return False  # verdicts come from enrollment; re-run it instead of editing them

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request: HttpRequest, obj: Selfie) -> None:
        try:
            services.delete_selfie(selfie=obj)
        except TwinsiteError as exc:
            self.message_user(request, exc.message, messages.ERROR)
