from __future__ import annotations

import factory
import numpy as np
from django.contrib.auth import get_user_model

from generation.models import GenerationJob, UsageRecord
from twins.models import Twin


def unit_vector(dim: int = 128, seed: int = 0) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class TwinFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Twin

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Twin {n}")

    class Params:
        # A twin that finished enrollment: a unit embedding of the test face model's size, and the
        # reference face every enrollment writes (generation refuses a twin without one).
        ready = factory.Trait(
            reference_face=factory.django.ImageField(
                filename="reference.png", format="PNG", width=224, height=224, color=(150, 120, 100)
            ),
            status=Twin.Status.READY,
            embedding=factory.LazyFunction(lambda: unit_vector().tobytes()),
            embedding_dim=128,
            embedding_model="scrfd500m_mbf",
            photo_count=15,
            accepted_count=15,
        )


class GenerationJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GenerationJob
        skip_postgeneration_save = True  # the hook below writes its own row

    owner = factory.SelfAttribute("twin.owner")
    twin = factory.SubFactory(TwinFactory, ready=True)
    prompt = "a portrait photo in a studio"
    seed = 1234
    steps = 4

    @factory.post_generation
    def usage(self, create: bool, extracted: object, **kwargs: object) -> None:
        """A succeeded job has its usage ledger row, as the worker writes it with the images
        (pass usage=False for one without)."""
        if create and extracted is not False and self.status == GenerationJob.Status.SUCCEEDED:
            UsageRecord.objects.create(owner=self.owner, job=self, images=self.num_images)
