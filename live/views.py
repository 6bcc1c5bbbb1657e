"""The HTML pages: the assessment form (live with JavaScript), the result page and the model card."""

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from ml_engine.forms import FeatureForm
from ml_engine.models import ModelActivation, ModelVersion
from ml_engine.registry import ModelUnavailable, active_model
from ml_engine.schema import FEATURES, FeatureValidationError
from ml_engine.services import assessment_create, predict

from .boards import DEFAULT_BOARD, valid_board


@never_cache  # the form is filled with health data; browsers must not keep it (README: "Health data")
@require_GET
def assessment_form(request):
    return render(request, "live/form.html", {"form": FeatureForm()})


@never_cache
@require_POST
def assessment_result(request):
    form = FeatureForm(request.POST)
    if not form.is_valid():
        return render(request, "live/form.html", {"form": form}, status=400)
    try:
        prediction = predict(features=form.features(), interface="form")
    except FeatureValidationError as exc:  # the form mirrors the schema; this is a safety net
        for key, messages in exc.errors.items():
            form.add_error(key if key in form.fields else None, messages)
        return render(request, "live/form.html", {"form": form}, status=400)
    except ModelUnavailable as exc:
        return render(request, "live/unavailable.html", {"reason": str(exc)}, status=503)
    assessment = assessment_create(prediction=prediction, interface="form")
    largest = max((abs(c) for c in prediction.contributions.values()), default=0.0) or 1.0
    rows = [
        {
            "feature": feature,
            "value": prediction.features[feature.key],
            "imputed": feature.key in prediction.imputed,
            "extrapolated": f"extrapolated:{feature.key}" in prediction.warnings,
            "contribution": prediction.contributions[feature.key],
            "width": round(50 * abs(prediction.contributions[feature.key]) / largest, 1),
        }
        for feature in FEATURES
    ]
    rows.sort(key=lambda row: -abs(row["contribution"]))
    return render(
        request,
        "live/result.html",
        {
            "prediction": prediction,
            "risk_percent": round(100 * prediction.risk, 1),
            "rows": rows,
            "assessment": assessment,
        },
    )


def _polyline(points, size=200):
    """SVG polyline coordinates for points in the unit square (y grows upwards)."""
    return " ".join(f"{x * size:.1f},{(1 - y) * size:.1f}" for x, y in points)


@require_GET
def model_card(request):
    try:
        served = active_model.get()
    except ModelUnavailable as exc:
        return render(request, "live/unavailable.html", {"reason": str(exc)}, status=503)
    meta = served.metadata
    curves = meta.get("curves", {})
    calibration = curves.get("calibration", [])
    ranges = served.training_ranges
    return render(
        request,
        "live/model_card.html",
        {
            "served": served,
            "meta": meta,
            "features": [
                {
                    "feature": f,
                    "train_min": ranges[f.key][0],
                    "train_max": ranges[f.key][1],
                    "missing": meta["data"]["missing"].get(f.key, 0),
                }
                for f in FEATURES
            ],
            "roc_points": _polyline(curves.get("roc", [])),
            "calibration_points": _polyline([(p["predicted"], p["observed"]) for p in calibration]),
            "calibration_dots": [
                {"x": round(p["predicted"] * 200, 1), "y": round((1 - p["observed"]) * 200, 1), "n": p["count"]}
                for p in calibration
            ],
            "versions": ModelVersion.objects.order_by("-created_at")[:20],
            "activations": ModelActivation.objects.select_related("model_version")[:20],
        },
    )


@require_GET
def kiosk(request, board=DEFAULT_BOARD):
    """Full-screen board of anonymous live sessions; the page fills itself over the socket."""
    if not valid_board(board):
        raise Http404("Board names are 1 to 64 letters, digits, hyphens or underscores.")
    return render(request, "live/kiosk.html", {"board": board})
