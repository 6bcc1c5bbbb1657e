"""OpenAPI (drf-spectacular) extensions, registered when the app is ready."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension


class StrictSerializerExtension(OpenApiSerializerExtension):
    """Publish serializers that refuse unknown keys as ``additionalProperties: false``."""

    target_class = "api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        if getattr(self.target, "min_properties", None):
            schema["minProperties"] = self.target.min_properties
        return schema
