"""The address of the client behind a request: the one place that reads it.

Behind TRUSTED_PROXY_COUNT proxies (the TLS proxy the README recommends, a load balancer),
REMOTE_ADDR is the nearest proxy's address and each proxy appends the address it saw to
X-Forwarded-For. The client is the right-most hop that no trusted proxy wrote: everything to
its left came from the client and may be forged. With no trusted proxy (the default) the header
is ignored, since anyone can send it.

Used by the login lockout (accounts/throttles.py) and the API throttles (twinsite/throttling.py).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request

UNKNOWN = "-"


def _normalised(raw: str) -> str | None:
    value = raw.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443" from some proxies
        value = value[1 : value.index("]")]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_address(request: HttpRequest | Request | None) -> str:
    """The client's IP address as a string, or "-" when there is no request (a shell, a test)."""
    if request is None:
        return UNKNOWN
    remote = request.META.get("REMOTE_ADDR") or UNKNOWN
    proxies = settings.TRUSTED_PROXY_COUNT
    if not proxies:
        return remote
    forwarded = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    # The chain as the last proxy sees it: every forwarded hop, then the proxy's own connection.
    chain = [*forwarded, remote]
    # Fewer hops than proxies: the request skipped a proxy; the left-most hop is the best we know.
    hop = chain[max(0, len(chain) - 1 - proxies)]
    # A hop that is not an address was not written by a proxy of ours: count it as the connection.
    return _normalised(hop) or remote
