from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from generation.models import GeneratedImage, GenerationJob
from generation.selectors import queue_position, restart_notice


class GenerationRequestSerializer(serializers.Serializer):
    """Shape only: the ranges and rules live in services.submit_generation, so every client gets the same ones."""

    twin = serializers.IntegerField(min_value=1)
    prompt = serializers.CharField(allow_blank=True, trim_whitespace=False)
    negative_prompt = serializers.CharField(allow_blank=True, required=False, default="", trim_whitespace=False)
    num_images = serializers.IntegerField(required=False, default=1)
    seed = serializers.IntegerField(required=False, allow_null=True, default=None)
    steps = serializers.IntegerField(required=False, allow_null=True, default=None)
    guidance = serializers.FloatField(required=False, allow_null=True, default=None)
    identity_strength = serializers.FloatField(required=False, default=0.8)
    # FaceID Plus v2's face-structure weight (s_scale); default 1.0 as in the recipe.
    face_structure = serializers.FloatField(required=False, allow_null=True, default=None)
    best_of = serializers.IntegerField(required=False, allow_null=True, default=None)
    preset = serializers.ChoiceField(
        choices=GenerationJob.Preset.choices,
        required=False,
        default=GenerationJob.Preset.DEFAULT,
        help_text="default: best quality at `steps`; turbo: 8 distilled steps (steps ignored), several times faster.",
    )


# The old product's `/generate` body (generation/compat.py): the twin is optional there. A comment, not a
# docstring: drf-spectacular would publish a docstring as the schema's description.
class GenerateRequestSerializer(serializers.Serializer):
    prompt = serializers.CharField(allow_blank=True, trim_whitespace=False)
    num_images = serializers.IntegerField(required=False, default=1)
    negative_prompt = serializers.CharField(required=False, default="", allow_blank=True)
    seed = serializers.IntegerField(required=False, allow_null=True, default=None)
    twin = serializers.IntegerField(required=False, allow_null=True, default=None)


class GeneratedImageSerializer(serializers.ModelSerializer):
    number = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    filename = serializers.CharField(read_only=True)
    score_band = serializers.ChoiceField(
        choices=["ok", "mid", "low", "none"], read_only=True, help_text="How the identity score reads on its badge."
    )

    class Meta:
        model = GeneratedImage
        fields = ["number", "filename", "url", "seed", "identity_score", "score_band", "score_note", "width", "height"]

    def get_number(self, image: GeneratedImage) -> int:
        return image.index + 1

    def get_url(self, image: GeneratedImage) -> str:
        path = reverse("api-generation-image", kwargs={"pk": image.job_id, "number": image.index + 1})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class GenerationJobSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField()
    restarting = serializers.SerializerMethodField()
    notice = serializers.SerializerMethodField()
    images = serializers.SerializerMethodField()
    twin_name = serializers.CharField(source="twin.name", read_only=True)

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "status",
            "progress",
            "queue_position",
            "restarting",
            "notice",
            "twin",
            "twin_name",
            "prompt",
            "negative_prompt",
            "num_images",
            "seed",
            "steps",
            "guidance",
            "identity_strength",
            "face_structure",
            "best_of",
            "preset",
            "width",
            "height",
            "error",
            "images",
            "backend",
            "model_versions",
            "stage_seconds",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_progress(self, job: GenerationJob) -> dict[str, float | int]:
        total = job.progress_total or job.steps
        return {
            "step": job.progress_step,
            "total": total,
            "fraction": round(min(job.progress_step / total, 1.0), 3) if total else 0.0,
        }

    def get_restarting(self, job: GenerationJob) -> bool:
        """Running, but its worker died: it starts again from the beginning on another worker."""
        return bool(restart_notice(job=job))

    def get_notice(self, job: GenerationJob) -> str:
        """What is happening when the progress alone would mislead (a restart); else ""."""
        return restart_notice(job=job)

    def get_queue_position(self, job: GenerationJob) -> int | None:
        return queue_position(job=job)

    def get_images(self, job: GenerationJob) -> list[dict]:
        # Images appear only with `succeeded`: a job never shows a partial set.
        if job.status != GenerationJob.Status.SUCCEEDED:
            return []
        return GeneratedImageSerializer(job.images.all(), many=True, context=self.context).data
