from django.contrib import admin
from django.urls import include, path

from realtime.console.code import console_code
from realtime.console.views import console_page, session_usage
from realtime.sessions.views import session_inspect, session_list

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/", include("accounts.api.urls")),
    path("", include("accounts.urls")),
    path("", include("realtime.urls")),
    path("projects/<slug:slug>/sessions/", session_list, name="session-list"),
    path("projects/<slug:slug>/sessions/<str:session_id>/usage", session_usage, name="console-session-usage"),
    path("projects/<slug:slug>/sessions/<str:session_id>/", session_inspect, name="session-inspect"),
    path("projects/<slug:slug>/console/", console_page, name="console"),
    path("projects/<slug:slug>/console/code/", console_code, name="console-code"),
]

# Portal pages in our layout; under /api/ the JSON error middleware answers instead.
handler404 = "accounts.views.page_not_found"
handler500 = "accounts.views.server_error"
