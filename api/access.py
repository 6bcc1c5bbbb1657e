"""Who may do what over HTTP (README: "Access and roles").

Anonymous people predict. Recording an outcome needs an API key with the ``outcomes`` scope
(``Authorization: Api-Key <key>``) or a staff session (with its CSRF token); changing a recorded
outcome needs staff. The DRF classes here are configured on each view as class attributes.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework_api_key.permissions import KeyParser

from ml_engine.models import Assessment
from ml_engine.services import Recorder

from .models import ApiKey

KEY_HEADER_HELP = "Authorization: Api-Key <key>"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Api-Key <key>``: a usable (unrevoked, unexpired) key becomes ``request.auth``.
    A wrong or revoked key is a 401, never a silent anonymous request."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        key = KeyParser().get(request._request)
        if not key:
            return None
        try:
            api_key = ApiKey.objects.get_from_key(key)  # unrevoked keys only, hash compared
        except ApiKey.DoesNotExist:
            api_key = None
        if api_key is None or api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key is not valid (unknown, revoked or expired).")
        return None, api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """A logged-in staff member's session (the admin login), with Django's CSRF check."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None or not result[0].is_staff:
            return None
        return result


def _scoped_key(request: Request, scope: str) -> ApiKey | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiKey) and auth.has_scope(scope) else None


def _staff(request: Request) -> Any:
    user = getattr(request, "user", None)
    return user if user is not None and getattr(user, "is_staff", False) else None


class CanRecordOutcomes(permissions.BasePermission):
    """An API key with the ``outcomes`` scope, or a staff session."""

    message = f"Recording an outcome needs an API key with the outcomes scope ({KEY_HEADER_HELP}) or a staff session."

    def has_permission(self, request: Request, view: Any) -> bool:
        return _scoped_key(request, ApiKey.Scope.OUTCOMES) is not None or _staff(request) is not None


class IsStaff(permissions.BasePermission):
    message = "Only staff can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return _staff(request) is not None


class CanPredict(permissions.BasePermission):
    """Open to everyone unless DJANGO_API_REQUIRE_KEY_FOR_PREDICT is on; then a key with the
    ``predict`` scope or a staff session."""

    message = f"Predictions need an API key with the predict scope ({KEY_HEADER_HELP})."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not settings.API_REQUIRE_KEY_FOR_PREDICT:
            return True
        return _scoped_key(request, ApiKey.Scope.PREDICT) is not None or _staff(request) is not None


class PredictAccess(APIView):
    """For prediction views: open by default; with DJANGO_API_REQUIRE_KEY_FOR_PREDICT, a key with
    the ``predict`` scope or a staff session. Credentials are only read when the setting is on,
    so open predictions never touch the key table."""

    def get_authenticators(self) -> list[Any]:
        if not settings.API_REQUIRE_KEY_FOR_PREDICT:
            return []
        return [ApiKeyAuthentication(), StaffSessionAuthentication()]

    def get_permissions(self) -> list[Any]:
        return [CanPredict()]

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated(message)
        super().permission_denied(request, message, code)


def predict_access_error(request: Any) -> tuple[int, str] | None:
    """The same rule for plain Django views (V2): None when the request may predict, else the
    status (401 or 403) and a message."""
    if not settings.API_REQUIRE_KEY_FOR_PREDICT:
        return None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return None  # V2 views are CSRF exempt, but a staff member's browser only reads here
    key = KeyParser().get(request)
    if not key:
        return 401, CanPredict.message
    try:
        api_key = ApiKey.objects.get_from_key(key)
    except ApiKey.DoesNotExist:
        return 401, "This API key is not valid (unknown, revoked or expired)."
    if api_key.has_expired:
        return 401, "This API key is not valid (unknown, revoked or expired)."
    return None if api_key.has_scope(ApiKey.Scope.PREDICT) else (403, CanPredict.message)


def recorder_for(request: Request) -> Recorder:
    """The audit identity of whoever passed ``CanRecordOutcomes``: staff first, else the key."""
    user = _staff(request)
    if user is not None:
        return Recorder(source=Assessment.OutcomeSource.STAFF, name=f"staff:{user.get_username()}", user=user)
    key = request.auth
    if not isinstance(key, ApiKey):
        raise exceptions.NotAuthenticated()  # only reached past CanRecordOutcomes, which requires one
    return Recorder(source=Assessment.OutcomeSource.API_KEY, name=f"key:{key.name} ({key.prefix})")
