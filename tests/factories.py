from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from generation.models import GenerationJob
from twins.models import Twin


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


class GenerationJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GenerationJob

    owner = factory.SelfAttribute("twin.owner")
    twin = factory.SubFactory(TwinFactory)
    prompt = "a portrait photo in a studio"
    seed = 1234
    steps = 4
