from __future__ import annotations

import logging

from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.models import User

logger = logging.getLogger(__name__)


def get_or_create_api_token(*, user: User) -> Token:
    token, _ = Token.objects.get_or_create(user=user)
    return token


@transaction.atomic
def rotate_api_token(*, user: User) -> Token:
    """Revoke the user's token (every script using it stops working) and issue a new one."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


def revoke_api_token(*, user: User) -> None:
    Token.objects.filter(user=user).delete()


def delete_account(*, user: User) -> None:
    """Erase a person: every twin (selfies, crops, embeddings, generated images, and their files), every
    generation job, the API token, then the user row. Files go after commit, as with `delete_twin`.

    Sessions are left to expire: with the user row gone they no longer log anyone in.
    """
    from twins.models import Twin
    from twins.services import delete_twin

    with transaction.atomic():
        locked = User.objects.select_for_update().filter(pk=user.pk).first()
        if locked is None:
            return
        for twin in Twin.objects.filter(owner=locked):
            delete_twin(twin=twin)
        locked.delete()  # cascades to tokens and any job left without a twin
    logger.info("account deleted", extra={"user": user.pk})


def delete_user_data(*, user: User) -> int:
    """Erase what a person made (every twin with its selfies, crops, embeddings, generation jobs and
    generated images, files after commit) and keep the account and its API token. Returns the twins erased."""
    from twins.models import Twin
    from twins.services import delete_twin

    with transaction.atomic():
        twins = list(Twin.objects.filter(owner=user))
        for twin in twins:
            delete_twin(twin=twin)
    logger.info("user data deleted", extra={"user": user.pk, "twins": len(twins)})
    return len(twins)
