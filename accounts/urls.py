from django.urls import path
from django.views.generic import RedirectView

from accounts import views
from accounts.billing import views as billing

urlpatterns = [
    path("", RedirectView.as_view(url="/projects/", permanent=False), name="home"),
    path("accounts/verification/resend/", views.verification_resend, name="verification-resend"),
    path("invitations/<str:token>/", views.invitation_page, name="invitation-page"),
    path("projects/", views.project_list, name="project-list"),
    path("projects/new/", views.project_new, name="project-new"),
    # Deleted projects are archived: their owners keep their statements (not a slug: "deleted" is reserved).
    path("projects/deleted/", billing.deleted_projects, name="deleted-projects"),
    path("projects/deleted/<int:pk>/statements/<str:month>/", billing.deleted_project_statement,
         name="deleted-project-statement"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/keys/new/", views.key_new, name="key-new"),
    path("projects/<slug:slug>/keys/<str:key_pk>/created/", views.key_created, name="key-created"),
    path("projects/<slug:slug>/keys/<str:key_pk>/revoke/", views.key_revoke, name="key-revoke"),
    path("projects/<slug:slug>/keys/<str:key_pk>/rotate/", views.key_rotate, name="key-rotate"),
    path("projects/<slug:slug>/members/", views.member_list, name="member-list"),
    path("projects/<slug:slug>/members/<int:member_id>/role/", views.member_role, name="member-role"),
    path("projects/<slug:slug>/members/<int:member_id>/remove/", views.member_remove, name="member-remove"),
    path("projects/<slug:slug>/settings/", views.project_settings, name="project-settings"),
    path("projects/<slug:slug>/delete/", views.project_delete, name="project-delete"),
    path("projects/<slug:slug>/usage/", billing.usage_dashboard, name="usage-dashboard"),
    path("projects/<slug:slug>/usage/export.csv", billing.usage_csv, name="usage-csv"),
    path("projects/<slug:slug>/usage/keys/<str:key_id>/", billing.usage_key, name="usage-key"),
    path("projects/<slug:slug>/usage/statements/<str:month>/", billing.usage_statement, name="usage-statement"),
    path("projects/<slug:slug>/usage/budgets/", billing.usage_budgets, name="usage-budgets"),
]
