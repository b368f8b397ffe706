from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from realtime.console.views import console_page, session_usage
from realtime.sessions.views import session_list

class FaviconRedirect(RedirectView):
    permanent = True

    def get_redirect_url(self, *args, **kwargs):
        return static("favicon.svg")


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
]

# Portal pages in our layout; under /api/ the JSON error middleware answers instead.
handler404 = "accounts.views.page_not_found"
handler500 = "accounts.views.server_error"
