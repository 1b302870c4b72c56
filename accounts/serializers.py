"""API shapes of the accounts app. Serializers parse input and shape output; they never save."""

from __future__ import annotations

from rest_framework import serializers


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class RotatedTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
