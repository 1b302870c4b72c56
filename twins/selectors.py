from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from twins.models import Twin


def twins_for_owner(*, owner: User) -> QuerySet[Twin]:
    return Twin.objects.filter(owner=owner).order_by("-created_at")
