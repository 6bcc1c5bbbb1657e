"""API keys in the admin: issue (the key is shown once), scope and revoke."""

from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from .models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    # The library leaves its list_display unannotated, so mypy types it as exactly six names.
    list_display = [*APIKeyModelAdmin.list_display, "scopes"]  # type: ignore[assignment]
