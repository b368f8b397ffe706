"""Django-level errors under /api/ (no route matched, an unhandled exception, a CSRF failure outside
DRF) are answered in the API's JSON error shape instead of an HTML page."""
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import JsonResponse

_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 500: "server_error"}
_MESSAGES = {
    400: "The request is not valid.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    500: "Internal server error.",
}


class ApiJsonErrorsMiddleware:
    # Both, so that under ASGI the request does not hop to a thread just for this check.
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self._jsonify(request, self.get_response(request))

    async def _acall(self, request):
        return self._jsonify(request, await self.get_response(request))

    @staticmethod
    def _jsonify(request, response):
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            status = response.status_code
            body = {"error": {"code": _CODES.get(status, "error"), "message": _MESSAGES.get(status, response.reason_phrase)}}
            replacement = JsonResponse(body, status=status)
            if response.has_header("Allow"):
                replacement["Allow"] = response["Allow"]
            return replacement
        return response
