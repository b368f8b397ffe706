from django.contrib import admin
from django.templatetags.static import static
from django.urls import URLPattern, include, path
from django.urls.resolvers import RoutePattern
from django.views.generic import RedirectView

from accounts.api import urls as accounts_api_urls
from realtime import urls as realtime_urls
from realtime.console.code import console_code
from realtime.console.views import console_page, session_usage
from realtime.sessions.views import session_inspect, session_list


class FaviconRedirect(RedirectView):
    permanent = True

    def get_redirect_url(self, *args, **kwargs):
        return static("favicon.svg")


def api_slash_aliases(patterns, prefix: str) -> list[URLPattern]:
    """REST paths have no trailing slash; each gets a slashed twin (same view, same answer, any
    method) so a client written either way keeps working. Only real paths get one, so an unknown path
    stays a plain 404 rather than a redirect. The schema leaves the twins out
    (accounts.api.schema.schema_without_slash_aliases)."""
    return [
        path(f"{prefix}{pattern.pattern}/", pattern.callback)
        for pattern in patterns
        if isinstance(pattern, URLPattern) and isinstance(pattern.pattern, RoutePattern)
        and f"{prefix}{pattern.pattern}".startswith("api/v1/") and not str(pattern.pattern).endswith("/")
    ]


urlpatterns = [
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico whatever the page links; send them to the real icon.
    path("favicon.ico", FaviconRedirect.as_view(), name="favicon"),
    path("accounts/", include("allauth.urls")),
    path("api/", include("accounts.api.urls")),
    path("", include("accounts.urls")),
    path("", include("realtime.urls")),
    path("projects/<slug:slug>/sessions/", session_list, name="session-list"),
    path("projects/<slug:slug>/sessions/<str:session_id>/usage", session_usage, name="console-session-usage"),
    path("projects/<slug:slug>/sessions/<str:session_id>/", session_inspect, name="session-inspect"),
    path("projects/<slug:slug>/console/", console_page, name="console"),
    path("projects/<slug:slug>/console/code/", console_code, name="console-code"),
    *api_slash_aliases(accounts_api_urls.urlpatterns, "api/"),
    *api_slash_aliases(realtime_urls.urlpatterns, ""),
]

# Portal pages in our layout; under /api/ the JSON error middleware answers instead.
handler404 = "accounts.views.page_not_found"
handler500 = "accounts.views.server_error"
