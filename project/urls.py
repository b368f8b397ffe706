from django.contrib import admin
from django.http import Http404
from django.templatetags.static import static
from django.urls import Resolver404, include, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from realtime.console.views import console_page, session_usage
from realtime.sessions.views import session_list


class FaviconRedirect(RedirectView):
    permanent = True

    def get_redirect_url(self, *args, **kwargs):
        return static("favicon.svg")


@csrf_exempt  # the target view does its own CSRF check (DRF's session authentication)
def api_slash_alias(request, rest):
    """REST paths have no trailing slash; the slashed form is an alias (same view, same answer, any
    method) so a client written either way keeps working. Not in the OpenAPI schema."""
    try:
        match = resolve(f"/api/v1/{rest}")
    except Resolver404:
        raise Http404 from None
    return match.func(request, *match.args, **match.kwargs)


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
    path("projects/<slug:slug>/console/", console_page, name="console"),
    re_path(r"^api/v1/(?P<rest>.+[^/])/$", api_slash_alias, name="api-slash-alias"),
]

# Portal pages in our layout; under /api/ the JSON error middleware answers instead.
handler404 = "accounts.views.page_not_found"
handler500 = "accounts.views.server_error"
