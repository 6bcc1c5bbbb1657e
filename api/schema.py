"""OpenAPI (drf-spectacular) extensions, registered when the app is ready."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction


class StrictSerializerExtension(OpenApiSerializerExtension):
    """Publish serializers that refuse unknown keys as ``additionalProperties: false``, and those
    that need at least one non-null field (``one_non_null_of``) with the matching ``anyOf``."""

    target_class = "api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        keys = getattr(self.target, "one_non_null_of", ())
        if keys:
            properties = schema["properties"]
            schema["minProperties"] = 1
            schema["anyOf"] = [
                {"required": [key], "properties": {key: {"type": properties[key]["type"]}}} for key in keys
            ]
        return schema


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """``Authorization: Api-Key <key>`` (README: "Access and roles")."""

    target_class = "api.access.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An API key issued with `manage.py apikey create` or in the admin, sent as "
            "`Api-Key <key>`. The outcomes scope records outcomes; the predict scope is needed for "
            "predictions only when DJANGO_API_REQUIRE_KEY_FOR_PREDICT is on.",
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    """A staff member's admin session cookie (unsafe methods also need the CSRF token)."""

    target_class = "api.access.StaffSessionAuthentication"
    name = "staffSession"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A staff member's session from the admin login; send the X-CSRFToken header too.",
        }


class RequiredBodySchema(AutoSchema):
    """For views whose body is a oneOf (no ``required`` list of its own): the body is required."""

    def _get_request_body(self, direction: Direction = "request") -> dict[str, Any] | None:
        body = super()._get_request_body(direction)
        if body:
            body["required"] = True
        return body
