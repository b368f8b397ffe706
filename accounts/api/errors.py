"""Every API error is JSON ``{"error": {"code": ..., "message": ...}}`` with the right status."""
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.exceptions import ServiceError

# DRF's default codes, renamed where ours are clearer to API callers.
_CODE_RENAMES = {"parse_error": "malformed_json"}


def _flatten(detail):
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(value) for value in detail]
    return str(detail)


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        extra = {"field": exc.field} if exc.field else {}
        return Response(error_body(exc.code, exc.message, **extra), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    if isinstance(detail, dict) and "code" in detail and "message" in detail:
        body = {"code": str(detail["code"]), "message": str(detail["message"])}
    elif isinstance(exc, exceptions.ValidationError):
        body = {"code": "invalid", "message": "The request is not valid.", "fields": _flatten(detail)}
    else:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = codes if isinstance(codes, str) else "error"
        body = {"code": _CODE_RENAMES.get(code, code), "message": str(detail) if detail else str(exc)}
    return Response({"error": body}, status=response.status_code, headers=dict(response.items()))
