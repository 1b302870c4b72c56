from __future__ import annotations

from django import forms
from django.conf import settings

from generation.models import MAX_IMAGES_PER_JOB, GenerationJob
from generation.services import (
    BEST_OF_RANGE,
    FACE_STRUCTURE_DEFAULT,
    FACE_STRUCTURE_RANGE,
    GUIDANCE_RANGE,
    IDENTITY_STRENGTH_RANGE,
    STEPS_RANGE,
)

# Prompt ideas shown as one-click presets on the generate form.
STYLE_PRESETS = {
    "Studio portrait": "studio portrait photo, soft key light, neutral grey backdrop, 85mm lens, sharp focus",
    "Business headshot": "professional business headshot, navy suit, office background softly blurred, natural light",
    "Outdoor candid": "candid photo outdoors in a park, golden hour sunlight, shallow depth of field, smiling",
    "Cinematic": "cinematic film still, moody lighting, teal and orange grade, anamorphic lens, 35mm film grain",
}


class GenerateForm(forms.Form):
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "a portrait photo of me ..."}), max_length=1000
    )
    negative_prompt = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2, "placeholder": "blurry, low quality"})
    )
    num_images = forms.TypedChoiceField(
        choices=[(n, str(n)) for n in range(1, MAX_IMAGES_PER_JOB + 1)], coerce=int, initial=4, label="Images"
    )
    preset = forms.ChoiceField(
        choices=GenerationJob.Preset.choices,
        initial=GenerationJob.Preset.DEFAULT,
        label="Quality",
        help_text="Fast makes a photo in a fraction of the time, with a little less detail.",
        required=False,  # a form posted without the choice (an older page, a script) gets the default
    )
    seed = forms.IntegerField(required=False, min_value=0, help_text="Leave empty for a random seed.")
    steps = forms.IntegerField(min_value=STEPS_RANGE[0], max_value=STEPS_RANGE[1])
    guidance = forms.FloatField(min_value=GUIDANCE_RANGE[0], max_value=GUIDANCE_RANGE[1])
    identity_strength = forms.FloatField(
        min_value=IDENTITY_STRENGTH_RANGE[0], max_value=IDENTITY_STRENGTH_RANGE[1], initial=0.8
    )
    face_structure = forms.FloatField(
        min_value=FACE_STRUCTURE_RANGE[0],
        max_value=FACE_STRUCTURE_RANGE[1],
        initial=FACE_STRUCTURE_DEFAULT,
        label="Face structure",
        required=False,
        help_text="How much of your reference face's shape to keep (1 = as the model's authors run it).",
    )
    best_of = forms.IntegerField(
        min_value=BEST_OF_RANGE[0],
        max_value=BEST_OF_RANGE[1],
        label="Best of",
        help_text="Make more candidates per image and keep the one most like you.",
    )

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.fields["steps"].initial = settings.GENERATION_DEFAULT_STEPS
        self.fields["guidance"].initial = settings.GENERATION_DEFAULT_GUIDANCE
        self.fields["best_of"].initial = settings.GENERATION_DEFAULT_BEST_OF

    def clean_preset(self) -> str:
        return self.cleaned_data.get("preset") or GenerationJob.Preset.DEFAULT
