"""Template helpers for twins' pages."""

from __future__ import annotations

from django import template

from twins.models import Twin
from twins.serializers import reference_face_path

register = template.Library()


@register.simple_tag
def reference_face_src(twin: Twin) -> str:
    """The small WebP of the twin's reference face (the stored PNG is several times heavier), or ""."""
    return reference_face_path(twin, small=True) or ""
