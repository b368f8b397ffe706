"""Security headers on every HTTP response (pages, the API, static files): a strict
Content-Security-Policy and a Permissions-Policy. Django's SecurityMiddleware adds Referrer-Policy
(SECURE_REFERRER_POLICY), X-Content-Type-Options and Cross-Origin-Opener-Policy; X-Frame-Options comes
from XFrameOptionsMiddleware.

The policy: scripts, styles, fonts, workers (the console's audio worklets) and connections
(fetch, and the console's WebSocket to this same host) only from this site; no inline script, no
inline event handler, no eval; images from this site or data: URIs; style attributes allowed (the
usage meters and chart swatches set a width or colour), style elements not; no plugins, no <base>,
forms post only here, and no framing. The microphone is for this site only (the console); camera,
geolocation and the rest are off."""
from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "media-src 'self' blob:",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
PERMISSIONS_POLICY = ", ".join([
    "microphone=(self)", "camera=()", "geolocation=()", "payment=()", "usb=()", "serial=()", "bluetooth=()",
    "midi=()", "magnetometer=()", "gyroscope=()", "accelerometer=()", "display-capture=()",
])


class SecurityHeadersMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self._headers(self.get_response(request))

    async def _acall(self, request):
        return self._headers(await self.get_response(request))

    @staticmethod
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
