"""/api/v1/ accounts endpoints, plus the OpenAPI schema and docs at /api/schema/ and /api/docs/."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.api import views
from accounts.billing import api as billing

urlpatterns = [
    path("v1/me", views.MeView.as_view(), name="api-me"),
    path("v1/projects", views.ProjectListView.as_view(), name="api-projects"),
    path("v1/projects/<slug:slug>", views.ProjectDetailView.as_view(), name="api-project"),
    path("v1/projects/<slug:slug>/members", views.MemberListView.as_view(), name="api-members"),
    path("v1/projects/<slug:slug>/members/<int:member_id>", views.MemberDetailView.as_view(), name="api-member"),
    path("v1/projects/<slug:slug>/keys", views.KeyListView.as_view(), name="api-keys"),
    path("v1/projects/<slug:slug>/keys/<str:key_pk>", views.KeyDetailView.as_view(), name="api-key"),
    path("v1/projects/<slug:slug>/keys/<str:key_pk>/revoke", views.KeyRevokeView.as_view(), name="api-key-revoke"),
    path("v1/projects/<slug:slug>/keys/<str:key_pk>/rotate", views.KeyRotateView.as_view(), name="api-key-rotate"),
    path("v1/projects/<slug:slug>/budgets", billing.BudgetListView.as_view(), name="api-budgets"),
    path("v1/usage", billing.UsageView.as_view(), name="api-usage"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file (no inline script); our template adds a
    # language, landmarks and readable colours.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api_docs.html"),
         name="api-docs"),
]
