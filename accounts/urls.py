from django.urls import path
from django.views.generic import RedirectView

from accounts import views

urlpatterns = [
    path("", RedirectView.as_view(url="/projects/", permanent=False), name="home"),
    path("projects/", views.project_list, name="project-list"),
    path("projects/new/", views.project_new, name="project-new"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/keys/new/", views.key_new, name="key-new"),
    path("projects/<slug:slug>/keys/<str:key_pk>/revoke/", views.key_revoke, name="key-revoke"),
    path("projects/<slug:slug>/keys/<str:key_pk>/rotate/", views.key_rotate, name="key-rotate"),
    path("projects/<slug:slug>/members/", views.member_list, name="member-list"),
    path("projects/<slug:slug>/members/<int:member_id>/role/", views.member_role, name="member-role"),
    path("projects/<slug:slug>/members/<int:member_id>/remove/", views.member_remove, name="member-remove"),
    path("projects/<slug:slug>/settings/", views.project_settings, name="project-settings"),
    path("projects/<slug:slug>/delete/", views.project_delete, name="project-delete"),
]
