"""The REST API (README: "REST API"): thin views that translate HTTP to ``ml_engine.services``.

Errors all have the shape ``{"errors": {"<key>": ["message", ...]}}`` (see ``api.drf``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotAuthenticated, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ml_engine.models import Assessment, Interface
from ml_engine.schema import FEATURE_KEYS, FeatureValidationError, clean_features
from ml_engine.selectors import model_overview
from ml_engine.services import (
    MAX_INSTANCES,
    OutcomeAlreadyRecorded,
    Prediction,
    assessment_create,
    assessment_record_outcome,
    assessments_create,
    invalid_input_count,
    predict,
    predict_many,
)

from .access import (
    ApiKeyAuthentication,
    CanRecordOutcomes,
    IsStaff,
    PredictAccess,
    StaffSessionAuthentication,
    recorder_for,
)
from .drf import charge_rows
from .schema import RequiredBodySchema
from .serializers import ErrorsSerializer, FeaturesSerializer, InstancesField, PredictionSerializer, StrictSerializer

PERSON = {
    "pregnancies": 2,
    "glucose": 148,
    "blood_pressure": 72,
    "skin_thickness": 35,
    "insulin": None,
    "bmi": 33.6,
    "diabetes_pedigree": 0.627,
    "age": 50,
}
PREDICTION_EXAMPLE = {
    "id": "7f0c2a9e-3b5d-4c1e-9a8f-2d6b4e1c0a57",
    "risk": 0.6721,
    "band": "high",
    "label": 1,
    "threshold": 0.3504,
    "contributions": dict(
        zip(FEATURE_KEYS, [0.08, 0.95, -0.02, 0.05, 0.0, 0.31, 0.12, 0.27], strict=True),
    ),
    "points": dict(
        zip(FEATURE_KEYS, [1.9, 23.4, -0.5, 1.2, 0.0, 7.4, 2.8, 6.4], strict=True),
    ),
    "imputed": ["insulin"],
    "warnings": [],
    "model": {"name": "diabetes", "version": "20250101-120000-abc123"},
}


def _error(description: str, *examples: OpenApiExample) -> OpenApiResponse:
    return OpenApiResponse(ErrorsSerializer, description=description, examples=list(examples))


THROTTLED = _error(
    "Too many requests from this address (API_THROTTLE_ANON); the Retry-After header says when to come back.",
    OpenApiExample("Throttled", value={"errors": {"non_field_errors": ["Too many requests. Try again in 3 s."]}}),
)
NO_MODEL = _error(
    "No model can serve (none trained yet, or the active one failed to load).",
    OpenApiExample(
        "No model",
        value={"errors": {"non_field_errors": ["No model is active. Run `python manage.py train`."]}},
    ),
)


class NoStore(APIView):
    """Responses of this view carry health data: ``Cache-Control: no-store`` (README: "Health data")."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        add_never_cache_headers(response)
        return response


class PredictApi(NoStore, PredictAccess, APIView):
    """Risk of diabetes within five years for one person (``features``) or many (``instances``).
    Open to anyone unless DJANGO_API_REQUIRE_KEY_FOR_PREDICT asks for a key (``PredictAccess``)."""

    schema = RequiredBodySchema()

    class InputSerializer(StrictSerializer):
        features = FeaturesSerializer(required=False)
        instances = InstancesField(required=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("features" in attrs) == ("instances" in attrs):
                raise serializers.ValidationError(
                    "Give either features (one person) or instances (a list of 1 to "
                    f"{MAX_INSTANCES} people), not both and not neither."
                )
            return attrs

    @extend_schema_serializer(component_name="PredictOne")
    class OneInputSerializer(StrictSerializer):
        """One person."""

        features = FeaturesSerializer()

    @extend_schema_serializer(component_name="PredictBatch")
    class BatchInputSerializer(StrictSerializer):
        """Several people, answered in order by one vectorised model call."""

        instances = InstancesField()

    OutputSerializer = PredictionSerializer

    @extend_schema_serializer(component_name="PredictionBatch")
    class BatchOutputSerializer(serializers.Serializer):
        """One prediction per instance, in input order."""

        predictions = PredictionSerializer(many=True, help_text="One prediction per instance, in input order.")

    @extend_schema(
        operation_id="predict",
        summary="Predict the risk of diabetes",
        description=(
            "Send one person as `features` or up to "
            f"{MAX_INSTANCES} as `instances` (one vectorised model call). Absent or null features are "
            "imputed with the training median and listed in `imputed`. Each prediction is stored as an "
            "assessment whose `id` can later receive the outcome. Errors name the field by its path in the "
            "body (`features.glucose`, `instances[3].age`) and the allowed range."
        ),
        request=PolymorphicProxySerializer(
            component_name="Predict",
            serializers=[OneInputSerializer, BatchInputSerializer],
            resource_type_field_name=None,
        ),
        responses={
            200: PolymorphicProxySerializer(
                component_name="PredictResponse",
                serializers=[PredictionSerializer, BatchOutputSerializer],
                resource_type_field_name=None,
            ),
            400: _error(
                "Invalid body: not JSON, not application/json, unknown keys, or values outside the schema.",
                OpenApiExample(
                    "Out of range",
                    value={
                        "errors": {
                            "features.glucose": [
                                "Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL; got 900."
                            ]
                        }
                    },
                ),
                OpenApiExample(
                    "Not JSON",
                    value={"errors": {"non_field_errors": ["The body is not valid JSON: Expecting value ..."]}},
                ),
            ),
            429: THROTTLED,
            503: NO_MODEL,
        },
        examples=[
            OpenApiExample("One person", value={"features": PERSON}, request_only=True),
            OpenApiExample(
                "Several people",
                value={"instances": [PERSON, {"glucose": 95, "bmi": 24.1, "age": 31}]},
                request_only=True,
            ),
            OpenApiExample("One prediction", value=PREDICTION_EXAMPLE, response_only=True, status_codes=["200"]),
            OpenApiExample(
                "Several predictions",
                value={
                    "predictions": [
                        PREDICTION_EXAMPLE,
                        {**PREDICTION_EXAMPLE, "id": "c41d9e7a-8b2f-4f60-a3d5-90e1b7c6f218"},
                    ]
                },
                response_only=True,
                status_codes=["200"],
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = validated_input(request.data)
        if "features" in data:
            prediction = predict(features=data["features"], interface=Interface.REST)
            assessment = assessment_create(prediction=prediction, interface=Interface.REST)
            return Response(answer(predictions=[prediction], ids=[str(assessment.public_id)], single=True))
        charge_rows(request, len(data["instances"]) - 1)  # a batch of N costs N (README: "Throttles")
        predictions = predict_many(instances=data["instances"], interface=Interface.REST)
        assessments = assessments_create(predictions=predictions, interface=Interface.REST)
        return Response(answer(predictions=predictions, ids=[str(a.public_id) for a in assessments], single=False))


def validated_input(data: Any) -> dict[str, Any]:
    """A predict body validated by ``PredictApi.InputSerializer``; a refusal raises DRF's
    ValidationError and is counted as an invalid REST input. The view and the prediction route
    (api/asgi.py) both take their input from here."""
    features = data.get("features") if type(data) is dict and len(data) == 1 else None
    if type(features) is dict:
        # Exactly {"features": {...}}: the serializer's answer is then its features field's alone,
        # and that field validates with clean_features (FeaturesSerializer.to_internal_value). The
        # serializer's fields cost more to build for each request (~80 µs, deep copies) than the
        # validation itself, so a body that passes is taken from clean_features directly; one that
        # fails goes through the serializer, which words the errors.
        try:
            return {"features": clean_features(features)}
        except FeatureValidationError:
            pass
    serializer = PredictApi.InputSerializer(data=data)
    if not serializer.is_valid():
        invalid_input_count(interface=Interface.REST)
        raise serializers.ValidationError(serializer.errors)
    return serializer.validated_data


def answer(*, predictions: Sequence[Prediction], ids: Sequence[str], single: bool) -> dict[str, Any]:
    """The predict answer: one prediction with its assessment id, or ``predictions`` in input order."""
    rows = [{"id": public_id, **prediction.as_dict()} for public_id, prediction in zip(ids, predictions, strict=True)]
    return rows[0] if single else {"predictions": rows}


class ModelApi(APIView):
    """The served model: schema with training ranges, metrics, threshold, bands and versions."""

    @extend_schema_serializer(component_name="ModelInfo")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="ModelFeature")
        class FeatureSerializer(serializers.Serializer):
            key = serializers.CharField()
            label = serializers.CharField()  # type: ignore[assignment]  # a declared field: DRF's metaclass moves it off the class
            unit = serializers.CharField()
            min = serializers.FloatField(help_text="Lowest accepted value.")
            max = serializers.FloatField(help_text="Highest accepted value.")
            step = serializers.FloatField()
            integer = serializers.BooleanField()
            train_min = serializers.FloatField(help_text="Lowest value in the training data.")
            train_max = serializers.FloatField(help_text="Highest value in the training data.")
            description = serializers.CharField()

        @extend_schema_serializer(component_name="ModelVersion")
        class VersionSerializer(serializers.Serializer):
            version = serializers.CharField()
            created = serializers.DateTimeField()
            algorithm = serializers.CharField()
            active = serializers.BooleanField()
            activated_at = serializers.DateTimeField(allow_null=True)
            metrics = serializers.DictField(child=serializers.FloatField())

        @extend_schema_serializer(component_name="ModelActivation")
        class ActivationSerializer(serializers.Serializer):
            version = serializers.CharField()
            activated_at = serializers.DateTimeField()

        @extend_schema_serializer(component_name="Calibration")
        class CalibrationSerializer(serializers.Serializer):
            @extend_schema_serializer(component_name="Interval")
            class IntervalSerializer(serializers.Serializer):
                estimate = serializers.FloatField()
                low = serializers.FloatField(help_text="Lower end of the 95 % interval.")
                high = serializers.FloatField(help_text="Upper end of the 95 % interval.")

            @extend_schema_serializer(component_name="NoiseFloor")
            class NoiseFloorSerializer(serializers.Serializer):
                mean = serializers.FloatField(help_text="Mean ECE of a perfectly calibrated model with these risks.")
                p95 = serializers.FloatField(help_text="Its 95th percentile.")
                draws = serializers.IntegerField(help_text="Simulated outcome sets per repeat.")
                seed = serializers.IntegerField()

            @extend_schema_serializer(component_name="BrierDecomposition")
            class BrierSerializer(serializers.Serializer):
                brier = serializers.FloatField()
                reliability = serializers.FloatField(help_text="Risk against frequency per bin (lower is better).")
                resolution = serializers.FloatField(help_text="Spread of the bins' frequencies (higher is better).")
                uncertainty = serializers.FloatField(help_text="Base rate x (1 - base rate).")
                within_bin = serializers.FloatField(help_text="What the binning leaves out: brier - (rel - res + unc).")

            rows = serializers.IntegerField(help_text="Rows each figure rests on (every person once).")
            repeats = serializers.IntegerField(help_text="Cross-validation repeats the figures are averaged over.")
            binning = serializers.CharField()
            method = serializers.CharField(help_text="How the figures were computed, in words.")
            ece = serializers.FloatField(help_text="Expected calibration error of the pooled out-of-fold risks.")
            ece_range = serializers.ListField(
                child=serializers.FloatField(), min_length=2, max_length=2, help_text="Lowest and highest over repeats."
            )
            ece_floor = NoiseFloorSerializer(help_text="The ECE a perfectly calibrated model would show here.")
            slope = IntervalSerializer(help_text="Calibration slope (1 when calibrated).")
            intercept = IntervalSerializer(help_text="Calibration intercept (0 when calibrated).")
            brier = BrierSerializer()

        name = serializers.CharField()
        version = serializers.CharField()
        algorithm = serializers.CharField()
        trained_at = serializers.DateTimeField(allow_null=True)
        threshold = serializers.FloatField(help_text="Risk at or above which label is 1.")
        bands = serializers.DictField(
            child=serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2),
            help_text="Band name to [low, high) risk.",
        )
        features = FeatureSerializer(many=True)
        metrics = serializers.DictField(
            child=serializers.FloatField(),
            help_text="Cross-validated roc_auc, brier, accuracy (mean over folds and _std), and the pooled "
            "out-of-fold ece_pooled, ece_floor, calibration_slope, calibration_intercept. Versions stored "
            "before pooled calibration existed lack the last four.",
        )
        calibration = CalibrationSerializer(
            allow_null=True,
            help_text='Calibration of the pooled out-of-fold risks beside its noise floor (README: "The model"); '
            "null for a version stored before these figures were computed.",
        )
        versions = VersionSerializer(many=True, help_text="Stored versions, newest first (at most 20).")
        activations = ActivationSerializer(many=True, help_text="Activation history, newest first (at most 20).")

    @extend_schema(
        operation_id="model",
        summary="Describe the served model",
        responses={200: OutputSerializer, 429: THROTTLED, 503: NO_MODEL},
    )
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(model_overview().as_dict()).data)


class OutcomeConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


OUTCOME_ID = OpenApiParameter(
    "assessment_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="The assessment's `id` as returned by predict (a random UUID).",
)
OUTCOME_ERRORS = {
    400: _error(
        'The body is not {"outcome": 0} or {"outcome": 1}.',
        OpenApiExample(
            "Not 0 or 1",
            value={"errors": {"outcome": ["Outcome must be 0 (no diabetes) or 1 (diabetes), as a number."]}},
        ),
    ),
    401: _error(
        "No credentials, or an API key that is unknown, revoked or expired.",
        OpenApiExample(
            "No key",
            value={"errors": {"non_field_errors": ["Authentication credentials were not provided."]}},
        ),
    ),
    403: _error(
        "The key lacks the outcomes scope, the session is not staff, or the CSRF token is missing.",
        OpenApiExample("Wrong scope", value={"errors": {"non_field_errors": [CanRecordOutcomes.message]}}),
    ),
    404: _error(
        "No assessment has this id.",
        OpenApiExample(
            "Unknown id",
            value={"errors": {"non_field_errors": ["No assessment 7f0c2a9e-3b5d-4c1e-9a8f-2d6b4e1c0a57."]}},
        ),
    ),
    429: THROTTLED,
}


class AssessmentOutcomeApi(NoStore, APIView):
    """Record what happened to an assessed person: 0 (no diabetes) or 1 (diabetes).

    POST records an outcome once (an API key with the ``outcomes`` scope or a staff session); a
    second POST is a 409. PUT changes a recorded outcome and is for staff only. Every recording
    and change is kept in the audit trail (README: "Access and roles")."""

    authentication_classes = [ApiKeyAuthentication, StaffSessionAuthentication]
    permission_classes = [CanRecordOutcomes]

    @extend_schema_serializer(component_name="Outcome")
    class InputSerializer(StrictSerializer):
        """What happened to the person: 0 (no diabetes) or 1 (diabetes), as a JSON number."""

        class OutcomeField(serializers.IntegerField):
            def to_internal_value(self, data: Any) -> int:
                if isinstance(data, bool) or not isinstance(data, int) or data not in (0, 1):
                    raise serializers.ValidationError("Outcome must be 0 (no diabetes) or 1 (diabetes), as a number.")
                return data

        outcome = OutcomeField(min_value=0, max_value=1, help_text="0: no diabetes, 1: diabetes.")

    @extend_schema_serializer(component_name="AssessmentOutcome")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="public_id")
        outcome = serializers.IntegerField(min_value=0, max_value=1)
        outcome_recorded_at = serializers.DateTimeField()

    def get_permissions(self) -> Sequence[Any]:
        if self.request.method == "PUT":
            return [IsStaff()]
        return super().get_permissions()

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        if request.authenticators and not request.successful_authenticator:
            raise NotAuthenticated(message)  # a 401 that says what credentials would do
        super().permission_denied(request, message, code)

    @extend_schema(
        operation_id="assessment_outcome",
        summary="Record the outcome of an assessment",
        description="Needs an API key with the outcomes scope or a staff session. An outcome is recorded "
        "once: a second POST is a 409 (staff can change it with PUT).",
        parameters=[OUTCOME_ID],
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            **OUTCOME_ERRORS,
            409: _error(
                "The outcome was already recorded; only staff can change it (PUT).",
                OpenApiExample(
                    "Already recorded",
                    value={
                        "errors": {
                            "non_field_errors": [
                                "The outcome of assessment 7f0c2a9e-3b5d-4c1e-9a8f-2d6b4e1c0a57 was already "
                                "recorded; only staff can change it."
                            ]
                        }
                    },
                ),
            ),
        },
    )
    def post(self, request: Request, assessment_id: str) -> Response:
        return self._record(request, assessment_id, change=False)

    @extend_schema(
        operation_id="assessment_outcome_change",
        summary="Change a recorded outcome (staff)",
        description="Staff only (session with CSRF token). The change is kept in the audit trail: who, when, "
        "old → new.",
        parameters=[OUTCOME_ID],
        request=InputSerializer,
        responses={200: OutputSerializer, **OUTCOME_ERRORS},
    )
    def put(self, request: Request, assessment_id: str) -> Response:
        return self._record(request, assessment_id, change=True)

    def _record(self, request: Request, assessment_id: str, *, change: bool) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            assessment = assessment_record_outcome(
                public_id=assessment_id,
                outcome=serializer.validated_data["outcome"],
                recorder=recorder_for(request),
                allow_change=change,
            )
        except Assessment.DoesNotExist:
            raise NotFound(f"No assessment {assessment_id[:40]}.") from None
        except OutcomeAlreadyRecorded as exc:
            raise OutcomeConflict(str(exc)) from None
        return Response(self.OutputSerializer(assessment).data)
