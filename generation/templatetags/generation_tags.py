"""Template tags of the generation app. They shape what the view already loaded; none queries the database."""

from __future__ import annotations

from django import template

from generation.forms import STYLE_PRESETS, GenerateForm
from twins.models import Twin

register = template.Library()


@register.inclusion_tag("generation/_twin_panel.html", takes_context=True)
def generate_panel(context: template.Context, twin: Twin) -> dict:
    """The generate form and recent photos on a twin's page.

    The page's view puts `recent_jobs` (generation.selectors.recent_jobs_of) and `generation_usage`
    (usage_of, for the owner of a ready twin; else None) in the context.
    """
    return {
        "twin": twin,
        "form": GenerateForm(),
        "presets": STYLE_PRESETS,
        "recent_jobs": context.get("recent_jobs", []),
        "usage": context.get("generation_usage"),
        "csrf_token": context.get("csrf_token"),
        "can_change": context.get("can_change", True),
    }
