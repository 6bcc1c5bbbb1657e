"""API keys for clients that record outcomes (README: "Access and roles").

Keys are djangorestframework-api-key keys: only a prefix and a hash of each key are stored, the
key itself is shown once when it is issued (admin or ``manage.py apikey create``).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager


class ApiKeyManager(APIKeyManager):
    """The library's manager, typed for this model: the keys it finds and creates are ``ApiKey``s
    (its own annotations name the abstract base)."""

    def get_from_key(self, key: str) -> ApiKey:
        """The unrevoked key whose hash matches ``key``; raises ``ApiKey.DoesNotExist``."""
        return cast("ApiKey", super().get_from_key(key))

    def create_key(self, **kwargs: Any) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once, never stored)."""
        api_key, key = super().create_key(**kwargs)
        return cast("ApiKey", api_key), key


class ApiKey(AbstractAPIKey):
    """An API key with scopes: ``outcomes`` lets a client record outcomes, ``predict`` lets it
    predict when DJANGO_API_REQUIRE_KEY_FOR_PREDICT is on."""

    class Scope(models.TextChoices):
        OUTCOMES = "outcomes", "record outcomes"
        PREDICT = "predict", "predict (when predictions need a key)"

    scopes = models.JSONField(default=list, blank=True, help_text='Scope names, e.g. ["outcomes"].')

    objects: ClassVar[ApiKeyManager] = ApiKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])
