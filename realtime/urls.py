"""HTTP routes of the gateway app: JWKS, token minting, agents and deployments (pages and REST),
and the console token endpoint. REST paths have no trailing slash (project/urls.py aliases the slashed
form so older clients keep working)."""
from django.urls import path

from realtime.agents import api, views
from realtime.dialects.tasks.views import task_image

urlpatterns = [
    path(".well-known/jwks.json", views.jwks, name="jwks"),
    path("v1/images/<uuid:image_uuid>.<str:ext>", task_image, name="task-image"),
    # REST
    path("api/v1/tokens", api.TokenCreateView.as_view(), name="api-tokens"),
    path("api/v1/projects/<slug:slug>/agents", api.AgentListView.as_view(), name="api-agents"),
    path("api/v1/projects/<slug:slug>/agents/<int:agent_id>", api.AgentDetailView.as_view(), name="api-agent"),
    path("api/v1/projects/<slug:slug>/deployments", api.DeploymentListView.as_view(), name="api-deployments"),
    path("api/v1/projects/<slug:slug>/deployments/<int:deployment_id>", api.DeploymentDetailView.as_view(),
         name="api-deployment"),
    # Portal
    path("projects/<slug:slug>/console/token", views.console_token, name="console-token"),
    path("projects/<slug:slug>/console/enable", views.console_enable, name="console-enable"),
    path("projects/<slug:slug>/agents/", views.agent_list, name="agent-list"),
    path("projects/<slug:slug>/agents/new/", views.agent_new, name="agent-new"),
    path("projects/<slug:slug>/agents/<int:agent_id>/", views.agent_edit, name="agent-edit"),
    path("projects/<slug:slug>/agents/<int:agent_id>/delete/", views.agent_delete, name="agent-delete"),
    path("projects/<slug:slug>/deployments/", views.deployment_list, name="deployment-list"),
    path("projects/<slug:slug>/deployments/new/", views.deployment_new, name="deployment-new"),
    path("projects/<slug:slug>/deployments/<int:deployment_id>/", views.deployment_edit, name="deployment-edit"),
    path("projects/<slug:slug>/deployments/<int:deployment_id>/default/", views.deployment_default,
         name="deployment-default"),
    path("projects/<slug:slug>/deployments/<int:deployment_id>/delete/", views.deployment_delete,
         name="deployment-delete"),
]
