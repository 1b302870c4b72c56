"""The access matrix's data: alice's world of objects and every route with how it is called.

Shared by the access matrix (tests/reliability/test_access_matrix.py) and the CSRF test
(test_security.py), so a route added here is checked by both.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from accounts.services import get_or_create_api_token
from generation.models import GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory
from tests.twins.images import image_bytes, upload
from twins import services as twin_services
from twins.models import Selfie, Twin

SECRET_NAME = "ALICE-SECRET-TWIN"
SECRET_PROMPT = "ALICE-SECRET-PROMPT"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class World:
    twin: Twin
    selfie: Selfie
    job: GenerationJob
    image: GeneratedImage
    token: str


def build_world(alice, bob) -> World:
    twin = TwinFactory(owner=alice, name=SECRET_NAME, ready=True)
    twin.reference_face.save("reference.png", ContentFile(png_bytes()), save=True)
    selfie = twin_services.add_selfies(twin=twin, uploads=[upload("alice.jpg", image_bytes())]).accepted[0].selfie
    job = GenerationJobFactory(twin=twin, status=GenerationJob.Status.SUCCEEDED, prompt=SECRET_PROMPT, num_images=1)
    image = GeneratedImage(job=job, index=0, seed=job.seed, identity_score=0.5, width=64, height=64)
    image.file.save(image.filename, ContentFile(png_bytes()), save=True)
    TwinFactory(owner=bob, name="Bob's own", ready=True)
    return World(twin=twin, selfie=selfie, job=job, image=image, token=get_or_create_api_token(user=alice).key)


def _upload_body() -> dict:
    return {"files": [ContentFile(image_bytes(color=(1, 2, 3)), name="bob.jpg")]}


# kind: "api" (token or session; anonymous 401), "page" (session; anonymous redirected to login).
# calls: (method, data) pairs; data may be a callable that builds it (a fresh upload for each call).
@dataclass(frozen=True)
class Route:
    name: str
    kind: str
    kwargs: Callable[[World], dict] = field(default=lambda w: {})
    calls: tuple[tuple[str, object], ...] = (("get", None),)
    owner_status: int | None = 200  # alice's own GET, the positive control (None: not checked)
    # What support staff get for each change (every call but GET) to alice's object outside the admin:
    # 403, one rule for twins and generations (they read it, but change it only in the admin, which logs
    # it); 404 where the route only ever acts on the caller's own things (generating from a twin).
    staff_change_status: int = 403


T = lambda w: {"twin_id": w.twin.pk}  # noqa: E731
S = lambda w: {"twin_id": w.twin.pk, "selfie_id": w.selfie.pk}  # noqa: E731
J = lambda w: {"pk": w.job.pk}  # noqa: E731
JI = lambda w: {"pk": w.job.pk, "number": 1}  # noqa: E731

# Routes that name one of alice's objects.
OBJECT_ROUTES = [
    Route("api-twin-detail", "api", T, (("get", None), ("patch", {"name": "pwned"}), ("delete", None))),
    Route("api-twin-selfies", "api", T, (("post", _upload_body),), owner_status=None),
    Route("api-twin-selfie-detail", "api", S, (("get", None), ("delete", None))),
    Route("api-twin-enroll", "api", T, (("post", {}),), owner_status=None),
    Route("api-generation", "api", J, (("get", None), ("delete", None))),
    Route("api-generation-cancel", "api", J, (("post", {}),), owner_status=None),
    Route("api-generation-image", "api", JI),
    Route("api-generation-zip", "api", J),
    Route("twin-selfie-image", "api", S),
    Route("twin-reference-face", "api", T),
    Route("compat-status", "api", lambda w: {"job_id": f"twin-{w.twin.pk}"}),
    Route("compat-download", "api", lambda w: {"job_id": str(w.job.pk), "filename": "avatar_001.png"}),
    Route("twin-detail", "page", T),
    Route("twin-rename", "page", T, (("post", {"name": "pwned"}),), owner_status=None),
    Route("twin-upload", "page", T, (("post", _upload_body),), owner_status=None),
    Route("twin-enroll", "page", T, (("post", {}),), owner_status=None),
    Route("twin-delete", "page", T, (("post", {}),), owner_status=None),
    Route("twin-selfie-delete", "page", S, (("post", {}),), owner_status=None),
    Route(
        "generation-submit",
        "page",
        T,
        (
            (
                "post",
                {"prompt": "me", "num_images": 1, "steps": 4, "guidance": 5, "identity_strength": 0.8, "best_of": 1},
            ),
        ),
        owner_status=None,
        staff_change_status=404,
    ),
    Route("generation-new", "page", T),
    Route("generation-detail", "page", J),
    Route("generation-cancel", "page", J, (("post", {}),), owner_status=None),
    Route("generation-delete", "page", J, (("post", {}),), owner_status=None),
    Route("generation-image", "page", JI),
    Route("generation-image-delete", "page", JI, (("post", {}),), owner_status=None),
    Route("generation-zip", "page", J),
]

# Routes that refer to alice's objects through the request body: generating from her twin.
BODY_ROUTES = [
    ("api-generations", {"twin": "TWIN", "prompt": "me", "num_images": 1}),
    ("compat-generate", {"twin": "TWIN", "prompt": "me", "num_images": 1}),
]

# Routes of the caller's own things: lists must not show alice's, pages must not show her token.
OWN_ROUTES = [
    Route("api-twin-list", "api"),
    Route("api-generations", "api"),
    Route("compat-jobs", "api"),
    Route("compat-upload", "api", calls=(("post", _upload_body),)),
    Route("compat-generate", "api", calls=(("post", {"prompt": "me"}),)),
    Route("api-token-rotate-api", "api", calls=(("post", {}),)),
    Route("dashboard", "page"),
    Route("generation-history", "page"),
    Route("api-token", "page"),
    Route("api-token-rotate", "page", calls=(("post", {}),)),
    Route("twin-create", "page", calls=(("post", {}),)),
    Route("password_change", "page"),
    Route("password_change_done", "page"),
    Route("account-delete", "page"),
    Route("settings", "page"),
    Route("account-delete-data", "page"),
]

# Open to anyone, by design.
PUBLIC_ROUTES = {"health", "health-ready", "api-schema", "api-docs", "api-token-obtain", "signup", "login", "logout"}
# Operator routes: staff (or, for system status, any API token: it shows no user's data).
OPERATOR_ROUTES = {"metrics": "staff", "system-status": "staff-or-token", "api-system-status": "staff-or-token"}


def clients(user) -> dict[str, Client]:
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Token {get_or_create_api_token(user=user).key}")
    session = APIClient()
    session.force_login(user)
    return {"token": token, "session": session}


def call(client: Client, method: str, url: str, data: object, kind: str):
    data = data() if callable(data) else data
    if method == "get":
        return client.get(url)
    if isinstance(data, dict) and any(isinstance(v, list) for v in data.values()):
        return client.post(url, data, format="multipart")
    if kind == "api":
        return getattr(client, method)(url, data or {}, format="json")
    return getattr(client, method)(url, data or {})


def snapshot(world: World) -> dict:
    """Everything of alice's a successful attack would change."""
    twin = Twin.objects.filter(pk=world.twin.pk).values("name", "status", "photo_count", "embedding_dim").first()
    job = GenerationJob.objects.filter(pk=world.job.pk).values("status", "cancel_requested").first()
    return {
        "twin": twin,
        "job": job,
        "selfies": list(Selfie.objects.filter(twin_id=world.twin.pk).values_list("pk", "image")),
        "images": list(GeneratedImage.objects.filter(job_id=world.job.pk).values_list("pk", "file")),
        "jobs_on_twin": GenerationJob.objects.filter(twin_id=world.twin.pk).count(),
        "twins_of_owner": Twin.objects.filter(owner_id=world.twin.owner_id).count(),
        "token": world.token,
    }
