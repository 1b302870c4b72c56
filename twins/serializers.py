"""API shapes of the twins app. Serializers parse input and shape output; they never save.

Embeddings never leave the server: no serializer here names them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from twins.models import Selfie, Twin
from twins.services import UploadResult, enrollment_next_step, enrollment_stalled, enrollment_status_message


def _absolute(context: dict[str, Any], path: str) -> str:
    request = context.get("request")
    return request.build_absolute_uri(path) if request is not None else path


def selfie_image_path(selfie: Selfie, *, thumbnail: bool = False) -> str:
    path = reverse("twin-selfie-image", kwargs={"twin_id": selfie.twin_id, "selfie_id": selfie.pk})
    return f"{path}?size=thumb" if thumbnail else path


def reference_face_path(twin: Twin, *, small: bool = False) -> str | None:
    """The reference face's URL; `small`: the WebP pages show, named by the enrollment (epoch seconds, as
    static/js/twins.js builds it too) so browsers may keep it and a new enrollment is fetched anew."""
    if not twin.reference_face:
        return None
    path = reverse("twin-reference-face", kwargs={"twin_id": twin.pk})
    if not small:
        return path
    version = int(twin.enrolled_at.timestamp()) if twin.enrolled_at else 0
    return f"{path}?size=small&v={version}"


class TwinNameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What to call this twin, e.g. 'Me, 2026'.")


class SelfieUploadSerializer(serializers.Serializer):
    """Only for the schema: the view reads every `files` part (and `file`) itself."""

    files = serializers.ListField(child=serializers.ImageField(), required=False, help_text="One or more photos.")
    file = serializers.ImageField(required=False, help_text="A single photo (older clients).")


class SelfieChecksSerializer(serializers.Serializer):
    face_count = serializers.IntegerField(allow_null=True)
    face_box = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    detector_score = serializers.FloatField(allow_null=True)
    sharpness = serializers.FloatField(allow_null=True)
    brightness = serializers.FloatField(allow_null=True)
    yaw = serializers.FloatField(allow_null=True)
    pitch = serializers.FloatField(allow_null=True)
    similarity = serializers.FloatField(allow_null=True, help_text="Cosine to the twin's robust centre")


class SelfieSerializer(serializers.ModelSerializer):
    reason_label = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    checks = serializers.SerializerMethodField()

    class Meta:
        model = Selfie
        # The verdict, the file, what the checks measured.
        fields = ["id", "status", "reason", "reason_label", "message"]
        fields += ["original_name", "width", "height", "image_url", "thumbnail_url"]
        fields += ["checks", "created_at", "analyzed_at"]
        read_only_fields = fields

    def get_reason_label(self, selfie: Selfie) -> str:
        return selfie.get_reason_display() if selfie.reason else ""

    def get_image_url(self, selfie: Selfie) -> str:
        return _absolute(self.context, selfie_image_path(selfie))

    def get_thumbnail_url(self, selfie: Selfie) -> str:
        return _absolute(self.context, selfie_image_path(selfie, thumbnail=True))

    @extend_schema_field(SelfieChecksSerializer(allow_null=True))
    def get_checks(self, selfie: Selfie) -> dict[str, Any] | None:
        if selfie.analyzed_at is None:
            return None
        return {
            "face_count": selfie.face_count,
            "face_box": selfie.face_box,
            "detector_score": selfie.detector_score,
            "sharpness": selfie.sharpness,
            "brightness": selfie.brightness,
            "yaw": selfie.yaw,
            "pitch": selfie.pitch,
            "similarity": selfie.similarity,
        }


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField()


class TwinSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    status_message = serializers.SerializerMethodField()
    restarting = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    min_photos = serializers.SerializerMethodField()
    max_photos = serializers.SerializerMethodField()
    has_identity = serializers.SerializerMethodField()
    stalled = serializers.SerializerMethodField()
    reference_face_url = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = Twin
        fields = [
            "id",
            "name",
            "owner",
            "status",
            "status_display",
            "status_message",
            "photo_count",
            "accepted_count",
            "rejected_count",
            "min_photos",
            "max_photos",
            "progress",
            "restarting",
            "stalled",
            "has_identity",
            "embedding_model",
            "embedding_dim",
            "reference_face_url",
            "url",
            "page_url",
            "created_at",
            "updated_at",
            "enrolled_at",
        ]
        read_only_fields = fields

    def get_status_message(self, twin: Twin) -> str:
        return enrollment_status_message(twin)

    def get_restarting(self, twin: Twin) -> bool:
        """Its worker died mid-enrollment; it starts again on another worker (status_message says so)."""
        return enrollment_status_message(twin) != twin.status_message

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, twin: Twin) -> dict[str, int]:
        total = twin.progress_total
        done = min(twin.progress_done, total)
        return {"done": done, "total": total, "percent": round(100 * done / total) if total else 0}

    def get_min_photos(self, twin: Twin) -> int:
        return settings.TWIN_MIN_PHOTOS

    def get_max_photos(self, twin: Twin) -> int:
        return settings.TWIN_MAX_PHOTOS

    def get_has_identity(self, twin: Twin) -> bool:
        return bool(twin.embedding_dim)  # set together with the embedding, without loading it

    def get_stalled(self, twin: Twin) -> bool:
        """Enrolling with no progress for so long that the task must be lost: enrolling again is allowed."""
        return enrollment_stalled(twin)

    def get_reference_face_url(self, twin: Twin) -> str | None:
        path = reference_face_path(twin)
        return _absolute(self.context, path) if path else None

    def get_url(self, twin: Twin) -> str:
        return _absolute(self.context, reverse("api-twin-detail", kwargs={"twin_id": twin.pk}))

    def get_page_url(self, twin: Twin) -> str:
        return _absolute(self.context, reverse("twin-detail", kwargs={"twin_id": twin.pk}))


@extend_schema_field({"$ref": "#/components/schemas/TwinStatusEnum"})
class _TwinStatusField(serializers.ChoiceField):
    """The detail's `status`, described by reference to the list's enum.

    drf-spectacular names an enum after its component only when a single component uses it;
    with `status` in both Twin and TwinDetail it would fall back to a hashed name and warn
    (which fails `check --deploy`). Referring to TwinStatusEnum keeps one well-named enum.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(choices=Twin.Status.choices, read_only=True, **kwargs)


class TwinDetailSerializer(TwinSerializer):
    status = _TwinStatusField()
    selfies = serializers.SerializerMethodField()
    pending_count = serializers.SerializerMethodField()
    next_step = serializers.SerializerMethodField(help_text="What the owner should do now, in plain words.")

    class Meta(TwinSerializer.Meta):
        fields = [*TwinSerializer.Meta.fields, "pending_count", "next_step", "quality_summary", "selfies"]
        read_only_fields = fields

    def _selfies(self, twin: Twin) -> list[Selfie]:
        if not hasattr(self, "_selfie_cache"):
            self._selfie_cache = {}
        if twin.pk not in self._selfie_cache:
            self._selfie_cache[twin.pk] = list(twin.selfies.order_by("created_at", "id"))
        return self._selfie_cache[twin.pk]

    @extend_schema_field(SelfieSerializer(many=True))
    def get_selfies(self, twin: Twin) -> list[dict[str, Any]]:
        return SelfieSerializer(self._selfies(twin), many=True, context=self.context).data

    def get_pending_count(self, twin: Twin) -> int:
        return sum(1 for s in self._selfies(twin) if s.status == Selfie.Status.PENDING)

    def get_next_step(self, twin: Twin) -> str:
        return enrollment_next_step(twin, stalled=enrollment_stalled(twin), pending=self.get_pending_count(twin))


class UploadResultItemSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["accepted", "refused"])
    code = serializers.CharField(required=False)
    message = serializers.CharField(required=False)
    selfie = SelfieSerializer(required=False)


class UploadResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    refused = serializers.IntegerField()
    photo_count = serializers.IntegerField()
    results = UploadResultItemSerializer(many=True)
    twin = TwinSerializer()


def upload_result_data(result: UploadResult, *, context: dict[str, Any]) -> dict[str, Any]:
    items = []
    for outcome in result.outcomes:
        if outcome.selfie is not None:
            items.append(
                {
                    "name": outcome.name,
                    "status": "accepted",
                    "selfie": SelfieSerializer(outcome.selfie, context=context).data,
                }
            )
        else:
            assert outcome.refusal is not None
            items.append(
                {
                    "name": outcome.name,
                    "status": "refused",
                    "code": outcome.refusal.code,
                    "message": outcome.refusal.message,
                }
            )
    return {
        "accepted": len(result.accepted),
        "refused": len(result.refused),
        "photo_count": result.twin.photo_count,
        "results": items,
        "twin": TwinSerializer(result.twin, context=context).data,
    }
