"""Login throttling: after LOGIN_FAILURE_LIMIT failed sign-ins, stop checking passwords for a while.

Counted in the shared cache (the database cache by default, so every web process and host
sees the same counts), per username *and* client address, plus a looser count per address
alone (LOGIN_ADDRESS_FAILURE_LIMIT) that stops one host from trying many usernames. The
address is `twinsite.client_address.client_address()`, which sees through TRUSTED_PROXY_COUNT
proxies: behind the TLS proxy every connection comes from the proxy, and counting that would
let anyone lock anyone out.

Every way in goes through Django's `authenticate()`: the login page, the admin login and the
API's password-for-token exchange. `LoginThrottleBackend` sits first in AUTHENTICATION_BACKENDS
and refuses while blocked, so a blocked attempt never reaches the password hasher (no oracle,
no CPU to burn); failures are recorded from the `user_login_failed` signal, except those of
attempts refused while blocked: the lockout runs from the last counted failure, and knocking
on the door meanwhile does not keep it shut longer.

A username blocked from one address still signs in from another: an attacker can't lock a
person out of their own account from elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from twinsite.client_address import client_address

logger = logging.getLogger(__name__)


def _keys(username: str, ip: str) -> list[tuple[str, int]]:
    user_hash = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [
        (f"login-failures:{user_hash}:{ip}", settings.LOGIN_FAILURE_LIMIT),
        (f"login-failures:ip:{ip}", settings.LOGIN_ADDRESS_FAILURE_LIMIT),
    ]


def login_wait_seconds(*, username: str, ip: str) -> int:
    """Seconds until this username may try again from this address; 0 when it may now."""
    now = time.time()
    wait = 0.0
    for key, limit in _keys(username, ip):
        entry = cache.get(key)
        if entry and entry["count"] >= limit:
            wait = max(wait, entry["last"] + settings.LOGIN_LOCKOUT_SECONDS - now)
    return max(0, int(wait + 0.999))


def record_login_failure(*, username: str, ip: str) -> None:
    """Count a failed password. Refused attempts while blocked are not failures: see the module docstring."""
    if login_wait_seconds(username=username, ip=ip):
        return
    # A sliding window: each counted failure keeps the count for another LOGIN_LOCKOUT_SECONDS.
    now = time.time()
    for key, limit in _keys(username, ip):
        entry = cache.get(key) or {"count": 0}
        cache.set(key, {"count": entry["count"] + 1, "last": now}, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        if entry["count"] + 1 == limit:
            logger.warning(
                "sign-in locked", extra={"scope": "address" if ":ip:" in key else "username", "client_address": ip}
            )


def clear_login_failures(*, username: str, ip: str) -> None:
    # Only the username's own count: a success must not wipe what an address did to other accounts.
    cache.delete(_keys(username, ip)[0][0])


class LoginThrottleBackend:
    """Refuses every attempt while the username/address is blocked; otherwise lets the next backend decide.

    No `get_user`: it never logs anyone in, so sessions and `force_login` use the model backend.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if username is not None and login_wait_seconds(username=username, ip=client_address(request)):
            raise PermissionDenied("too many failed sign-in attempts")
        return None


@receiver(user_login_failed, dispatch_uid="twinsite-login-throttle-failed")
def _on_login_failed(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: object
) -> None:
    username = credentials.get("username")
    if username:
        record_login_failure(username=str(username), ip=client_address(request))


@receiver(user_logged_in, dispatch_uid="twinsite-login-throttle-ok")
def _on_logged_in(sender: object, request: HttpRequest | None, user: Any, **kwargs: object) -> None:
    if request is not None:
        clear_login_failures(username=user.get_username(), ip=client_address(request))


def wait_message(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
