"""Read queries shared by the dashboard, the API and the image views. Every one is scoped to a user."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from accounts.models import User
from twins.models import Selfie, Twin


def twins_for_owner(*, owner: User) -> QuerySet[Twin]:
    return Twin.objects.filter(owner=owner).select_related("owner").order_by("-created_at", "-id")


def twins_visible_to(*, user: User) -> QuerySet[Twin]:
    """Owners see their own twins; support staff may read everyone's."""
    if user.is_staff:
        return Twin.objects.select_related("owner").order_by("-created_at", "-id")
    return twins_for_owner(owner=user)


def get_twin(*, user: User, twin_id: int, for_change: bool = False) -> Twin:
    """The twin if `user` may see it, else 404 (never 403: a stranger learns nothing about the id).

    Staff may read any twin but change only their own here; support changes go through the admin.
    """
    twin = twins_visible_to(user=user).filter(pk=twin_id).first()
    if twin is None:
        raise Http404("No such twin.")
    if for_change and twin.owner_id != user.pk:
        raise PermissionDenied("Staff can read other people's twins here but not change them; use the admin.")
    return twin


def get_own_twin(*, owner: User, twin_id: int) -> Twin:
    """One of `owner`'s own twins, else 404, staff included: a generation runs only on the caller's own twin."""
    twin = twins_for_owner(owner=owner).filter(pk=twin_id).first()
    if twin is None:
        raise Http404("No such twin.")
    return twin


def selfies_of(*, twin: Twin) -> QuerySet[Selfie]:
    return Selfie.objects.filter(twin=twin).order_by("created_at", "id")


def get_selfie(*, user: User, twin_id: int, selfie_id: int, for_change: bool = False) -> Selfie:
    twin = get_twin(user=user, twin_id=twin_id, for_change=for_change)
    selfie = selfies_of(twin=twin).filter(pk=selfie_id).first()
    if selfie is None:
        raise Http404("No such photo.")
    selfie.twin = twin  # already loaded and access-checked
    return selfie
