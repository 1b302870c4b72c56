from __future__ import annotations

from django.http import HttpRequest

from twinsite.readiness import Readiness, check_readiness


def staff_readiness(request: HttpRequest) -> dict[str, Readiness]:
    """Staff pages (dashboard and admin) carry the site's readiness, for the missing-models banner."""
    user = getattr(request, "user", None)
    if not (user is not None and user.is_authenticated and user.is_staff):
        return {}
    return {"site_readiness": check_readiness()}
