"""Twins as records: create and rename. The name rules live here."""

from __future__ import annotations

import logging

from accounts.models import User
from twins.models import Twin
from twinsite.errors import ValidationFailed

logger = logging.getLogger(__name__)


NAME_MAX_LENGTH = Twin._meta.get_field("name").max_length


def _clean_twin_name(name: str) -> str:
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise ValidationFailed("Give the twin a name.", fields={"name": ["This field may not be blank."]})
    if len(cleaned) > NAME_MAX_LENGTH:
        raise ValidationFailed(
            f"The name is too long ({len(cleaned)} characters, at most {NAME_MAX_LENGTH}).",
            fields={"name": [f"Ensure this field has no more than {NAME_MAX_LENGTH} characters."]},
        )
    return cleaned


def create_twin(*, owner: User, name: str) -> Twin:
    return Twin.objects.create(owner=owner, name=_clean_twin_name(name))


def rename_twin(*, twin: Twin, name: str) -> Twin:
    twin.name = _clean_twin_name(name)
    twin.save(update_fields=["name", "updated_at"])
    return twin
