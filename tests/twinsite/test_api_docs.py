"""`/api/docs/` works without internet: Swagger UI comes from the app (drf-spectacular-sidecar), not a CDN."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

# Every URL the page makes the browser fetch: script/link/img sources and the favicon's href.
_ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def _docs_assets(client: Client) -> list[str]:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assets = _ASSET.findall(response.content.decode())
    assert assets, "the docs page references no script or stylesheet"
    return assets


def test_the_docs_page_references_no_other_host(client: Client) -> None:
    foreign = [url for url in _docs_assets(client) if urlsplit(url).scheme or urlsplit(url).netloc]
    assert foreign == [], f"/api/docs/ loads assets from another host (blank page offline): {foreign}"


def test_the_docs_page_assets_are_served_by_the_app(client: Client) -> None:
    assets = _docs_assets(client)
    assert any(url.endswith(".js") for url in assets), assets
    assert any(url.endswith(".css") for url in assets), assets
    for url in assets:
        response = client.get(url)
        assert response.status_code == 200, f"{url} answered {response.status_code}"
        # WhiteNoise answers static files with a streamed body; make sure it is not empty.
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body, f"{url} is empty"
