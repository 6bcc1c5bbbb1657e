"""URL configuration: the pages, the REST and V2 APIs, the OpenAPI document and operations."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("live.urls")),
    path("", include("api.urls")),
    path("admin/", admin.site.urls),
]
