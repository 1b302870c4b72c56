"""DRF's throttles, counting anonymous clients by `client_address()` instead of DRF's own reading.

DRF's `get_ident` trusts the whole X-Forwarded-For header unless NUM_PROXIES is set, so changing
the header would give a fresh allowance each time. One reading of the client address serves the
login lockout and these throttles alike (twinsite/client_address.py, TRUSTED_PROXY_COUNT).
"""

from __future__ import annotations

from rest_framework import throttling
from rest_framework.request import Request

from twinsite.client_address import client_address


class _ClientAddressIdent:
    def get_ident(self, request: Request) -> str:
        return client_address(request)


class UserRateThrottle(_ClientAddressIdent, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(_ClientAddressIdent, throttling.ScopedRateThrottle):
    pass
