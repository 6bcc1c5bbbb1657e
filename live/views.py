"""The HTML pages: the assessment form (live with JavaScript), the result page, the model card,
the kiosk board (README: "The person's pages") and the staff monitoring page (README: "Monitoring")."""

import ipaddress
import json
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

import segno
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.http.request import split_domain_port
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from ml_engine import monitoring
from ml_engine.models import Interface
from ml_engine.registry import ModelUnavailable, active_model
from ml_engine.schema import CLINICAL_CUTOFFS, FEATURES, FeatureValidationError
from ml_engine.selectors import model_overview
from ml_engine.services import assessment_create, invalid_input_count, predict
from ml_engine.training import DEFAULT_BANDS
from project import throttling

from . import charts, wording
from .boards import DEFAULT_BOARD, valid_board
from .forms import FeatureForm

# "Try an example": typical people, the medians (rounded) of groups of the training data (zeros that
# mean "not measured" left out), never a row of it. README: "The person's pages".
EXAMPLES = (
    {
        "name": "A woman in her twenties",
        "values": {"pregnancies": 2, "glucose": 111, "blood_pressure": 68, "bmi": 31.6, "age": 24},
    },
    {
        "name": "A woman aged 31 to 45",
        "values": {"pregnancies": 6, "glucose": 123, "blood_pressure": 74, "bmi": 32.9, "age": 38},
    },
    {
        "name": "A woman over 45",
        "values": {"pregnancies": 6, "glucose": 136, "blood_pressure": 78, "bmi": 30.9, "age": 54},
    },
    {
        "name": "Like those who developed diabetes",
        "values": {"pregnancies": 4, "glucose": 140, "blood_pressure": 75, "bmi": 34.3, "age": 36},
    },
)


def _page_context(form: FeatureForm) -> dict[str, Any]:
    """What the form page needs besides the form: examples, and the model's words when it serves."""
    examples = [{"name": e["name"], "json": json.dumps(e["values"])} for e in EXAMPLES]
    context: dict[str, Any] = {"form": form, "examples": examples}
    try:
        served = active_model.get()
    except ModelUnavailable:
        return context
    context["messages"] = wording.warning_messages(served.training_ranges)
    context["clinical_keys"] = {cutoff.code: cutoff.key for cutoff in CLINICAL_CUTOFFS}
    context["bands_sentence"] = wording.bands_sentence(served.bands)
    context["bands_json"] = json.dumps(served.bands)  # live.js keeps a shown percent inside its band
    context["threshold_percent"] = wording.percent(served.threshold)
    return context


@never_cache  # the form is filled with health data; browsers must not keep it (README: "Health data")
@require_GET
def assessment_form(request: HttpRequest) -> HttpResponse:
    context = _page_context(FeatureForm())
    # Reached from a kiosk board's code: the page offers to share on it, off until the person
    # turns it on (docs/kiosk.md, "Sharing"). The name alone is in the URL, never health data.
    board = request.GET.get("board", "")
    if valid_board(board):
        label = board.replace("-", " ").replace("_", " ")
        context.update(board=board, board_label=label, board_delay=round(settings.BOARD_DELAY_S))
    return render(request, "live/form.html", context)


@never_cache
@require_POST
def assessment_result(request: HttpRequest) -> HttpResponse:
    decision = throttling.form_posts.hit(request.META.get("REMOTE_ADDR") or "")
    if not decision.allowed:  # README: "Throttles"
        wait = int(decision.wait + 0.999)
        response = render(request, "live/throttled.html", {"wait": wait}, status=429)
        response["Retry-After"] = str(wait)
        return response
    form = FeatureForm(request.POST)
    if not form.is_valid():
        invalid_input_count(interface=Interface.FORM)
        return render(request, "live/form.html", _page_context(form), status=400)
    try:
        prediction = predict(features=form.features(), interface=Interface.FORM)
    except FeatureValidationError as exc:  # the form mirrors the schema; this is a safety net
        for key, problems in exc.errors.items():
            form.add_error(key if key in form.fields else None, problems)
        return render(request, "live/form.html", _page_context(form), status=400)
    except ModelUnavailable as exc:
        return render(request, "live/unavailable.html", {"reason": str(exc)}, status=503)
    assessment = assessment_create(prediction=prediction, interface=Interface.FORM)
    served = active_model.get()
    messages = wording.warning_messages(served.training_ranges)
    largest = max((abs(p) for p in prediction.points.values()), default=0.0) or 1.0
    mmol = form.cleaned_data.get("glucose_unit") == "mmol/L"
    rows: list[dict[str, Any]] = []
    for feature in FEATURES:
        value = prediction.features[feature.key]
        typed = wording.number(value)
        unit = wording.unit_text(feature)
        if feature.key == "glucose" and mmol and value is not None:
            typed = form.data.get("glucose", "").strip().replace(",", ".")
            unit = f"mmol/L ({wording.number(value)} mg/dL)"
        points = prediction.points[feature.key]
        rows.append(
            {
                "feature": feature,
                "value": typed,
                "unit": unit,
                "imputed": feature.key in prediction.imputed,
                "extrapolated": f"extrapolated:{feature.key}" in prediction.warnings,
                "points": points,
                "phrase": wording.driver_phrase(feature.label, points),
                "width": (width := round(50 * abs(points) / largest, 1)),
                "x": 50 if points >= 0 else round(50 - width, 1),
                "up": points >= 0,
            }
        )
    rows.sort(key=lambda row: -abs(row["points"]))
    clinical = wording.clinical_codes()
    return render(
        request,
        "live/result.html",
        {
            "prediction": prediction,
            "risk_percent": wording.shown_percent(prediction.risk, prediction.band, served.bands, 1),
            "rows": rows,
            "assessment": assessment,
            "threshold_sentence": wording.threshold_sentence(prediction.threshold, prediction.label),
            "bands_sentence": wording.bands_sentence(served.bands),
            "clinical": [messages[code] for code in prediction.warnings if code in clinical],
            "cautions": [messages[code] for code in prediction.warnings if code not in clinical and code in messages],
        },
    )


def _polyline(points: Iterable[tuple[float, float]], size: int = 200) -> str:
    """SVG polyline coordinates for points in the unit square (y grows upwards)."""
    return " ".join(f"{x * size:.1f},{(1 - y) * size:.1f}" for x, y in points)


@require_GET
def model_card(request: HttpRequest) -> HttpResponse:
    try:
        overview = model_overview(history=20)
    except ModelUnavailable as exc:
        return render(request, "live/unavailable.html", {"reason": str(exc)}, status=503)
    served = overview.served
    meta = served.metadata
    curves = meta.get("curves", {})
    calibration = curves.get("calibration", [])
    return render(
        request,
        "live/model_card.html",
        {
            "served": served,
            "meta": meta,
            # None for versions stored before pooled calibration existed: the page says so.
            "calibration": meta.get("calibration"),
            "threshold_percent": wording.percent(served.threshold),
            "bands_sentence": wording.bands_sentence(served.bands),
            "cutoffs": CLINICAL_CUTOFFS,
            "features": [
                {
                    "feature": row.feature,
                    "train_min": row.train_min,
                    "train_max": row.train_max,
                    "missing": meta["data"]["missing"].get(row.feature.key, 0),
                }
                for row in overview.features
            ],
            "roc_points": _polyline(curves.get("roc", [])),
            "calibration_points": _polyline([(p["predicted"], p["observed"]) for p in calibration]),
            "calibration_dots": [
                {"x": round(p["predicted"] * 200, 1), "y": round((1 - p["observed"]) * 200, 1), "n": p["count"]}
                for p in calibration
            ],
            # The same overview the REST model endpoint answers with (no queries here).
            "versions": overview.versions,
            "activations": overview.activations,
        },
    )


def join_url(request: HttpRequest, board: str) -> str | None:
    """Where visitors' phones open the board's page: ``KIOSK_PUBLIC_URL``, else the host the kiosk
    browser used unless that is a loopback name no phone can reach (docs/kiosk.md, "The public URL")."""
    path = f"/?board={board}"
    if settings.KIOSK_PUBLIC_URL:
        return settings.KIOSK_PUBLIC_URL + path
    host, _ = split_domain_port(request.get_host())
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost") or _is_loopback(host):
        return None
    return request.build_absolute_uri(path)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@require_GET
def kiosk(request: HttpRequest, board: str = DEFAULT_BOARD) -> HttpResponse:
    """Full-screen board of anonymous shared sessions; the page fills itself over the socket."""
    if not valid_board(board):
        raise Http404("Board names are 1 to 64 letters, digits, hyphens or underscores.")
    link = join_url(request, board)
    qr = ""
    if link is not None:
        # Drawn here, no network: a QR code readable across a room (scaled by CSS, crisp as SVG).
        qr = segno.make(link, error="m").svg_inline(omitsize=True, svgclass="qr", dark="#000", light="#fff", border=4)
        qr = qr.replace("<svg ", f'<svg role="img" aria-label="QR code for {escape(link)}" ', 1)
    try:
        bands = active_model.get().bands
    except ModelUnavailable:
        bands = DEFAULT_BANDS
    legend = [
        {"band": name, "text": wording.band_range_text(low, high)}
        for name, (low, high) in sorted(bands.items(), key=lambda item: item[1][0])
    ]
    context = {"board": board, "join_url": link, "qr_svg": qr, "legend": legend}
    return render(request, "live/kiosk.html", context)


def staff_only(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Staff pages through Django's auth (README: "Access and roles"): anonymous visitors go to the
    admin login and come back; a signed-in user who is not staff gets the 403 page."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not user.is_staff:
            return render(request, "live/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


@never_cache
@require_GET
@staff_only
def monitor(request: HttpRequest) -> HttpResponse:
    """Drift, served risks, predictions per interface, live calibration, and the serving plan with the
    shadow's agreement (README: "Monitoring").
    The figures are at most MONITOR_CACHE_SECONDS old; the page says when they were computed."""
    return render(request, "live/monitor.html", charts.page_context(monitoring.cached_report()))
