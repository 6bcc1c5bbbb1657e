"""URL configuration: the pages, the REST and V2 APIs, the OpenAPI document and operations."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("live.urls")),
    path("", include("api.urls")),
    path("admin/", admin.site.urls),
]

# The APIs answer a bug in their JSON shape, never with an HTML page (README: "Errors").
handler500 = "project.errors.server_error"
