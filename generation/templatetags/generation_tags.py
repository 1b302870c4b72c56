from __future__ import annotations

from django import template

from generation.forms import STYLE_PRESETS, GenerateForm
from generation.models import GenerationJob
from generation.selectors import usage_of
from twins.models import Twin

register = template.Library()


@register.inclusion_tag("generation/_twin_panel.html", takes_context=True)
def generate_panel(context: template.Context, twin: Twin) -> dict:
    """The generate form and recent photos on a twin's page."""
    recent = GenerationJob.objects.filter(twin=twin).prefetch_related("images")[:6]
    can_change = context.get("can_change", True)
    usage = usage_of(user=twin.owner) if can_change and twin.is_ready else None
    return {"twin": twin, "form": GenerateForm(), "presets": STYLE_PRESETS, "recent_jobs": recent, "usage": usage,
            "csrf_token": context.get("csrf_token"), "can_change": can_change}
