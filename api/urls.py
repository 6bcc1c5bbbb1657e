"""URLs of the REST API, the OpenAPI document, the Open Inference Protocol V2 and operations."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import ops, rest, v2

rest_urlpatterns = [
    path("api/v1/predict", rest.PredictApi.as_view(), name="predict"),
    path("api/v1/model", rest.ModelApi.as_view(), name="model"),
    path("api/v1/assessments/<str:assessment_id>/outcome", rest.AssessmentOutcomeApi.as_view(), name="outcome"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]

v2_model = "v2/models/" + v2.MODEL_NAME
v2_urlpatterns = [
    path("v2", v2.server_metadata, name="v2-server"),
    path("v2/health/live", v2.server_live, name="v2-live"),
    path("v2/health/ready", v2.server_ready, name="v2-ready"),
    path(v2_model, v2.model_metadata, name="v2-model"),
    path(f"{v2_model}/ready", v2.model_ready, name="v2-model-ready"),
    path(f"{v2_model}/infer", v2.model_infer, name="v2-infer"),
    path(f"{v2_model}/versions/<str:version>", v2.model_metadata, name="v2-model-version"),
    path(f"{v2_model}/versions/<str:version>/ready", v2.model_ready, name="v2-model-version-ready"),
    path(f"{v2_model}/versions/<str:version>/infer", v2.model_infer, name="v2-version-infer"),
    re_path(r"^v2/models/(?P<name>[^/]+)(?P<rest>/.*)?$", v2.unknown_model),
]

ops_urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
]

app_name = "api"
urlpatterns = rest_urlpatterns + v2_urlpatterns + ops_urlpatterns
