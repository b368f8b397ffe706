"""REST API: token minting (API keys only), and agents and deployments of a project.

Access: owners and admins write, members read, anyone else gets 404. An API-key caller reads its own
project only (deployments of its own environment only) and cannot change agents or deployments.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.authentication import ApiKeyAuthentication
from accounts.keys import VerifiedKey
from accounts.models import Agent, Deployment, Environment, Project
from accounts.selectors import MANAGER_ROLES, membership_get_for_user, project_get_for_key
from realtime.agents import selectors, services
from realtime.agents.serializers import (
    AgentSerializer,
    AgentWriteSerializer,
    DeploymentSerializer,
    DeploymentWriteSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from realtime.gateway.tokens import TokenRejected, token_mint


def _invalid(exc: DjangoValidationError) -> exceptions.ValidationError:
    return exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})


class _ProjectAccess:
    def __init__(self, project: Project, environment_id: int | None):
        self.project = project
        self.environment_id = environment_id  # set for an API-key caller: it sees its environment only


def _project_access(request, slug: str, *, write: bool) -> _ProjectAccess:
    if isinstance(request.auth, VerifiedKey):
        key = request.auth
        project = project_get_for_key(project_id=key.project_id, slug=slug)  # Http404 for another project
        if write:
            raise exceptions.PermissionDenied(
                {"code": "api_key_read_only", "message": "API keys can read agents and deployments, not change them."}
            )
        return _ProjectAccess(project, key.environment_id)
    membership = membership_get_for_user(user=request.user, slug=slug)
    if write and membership.role not in MANAGER_ROLES:
        raise exceptions.PermissionDenied(
            {"code": "role_forbidden", "message": "Only the project's owners and admins can change this."}
        )
    return _ProjectAccess(membership.project, None)


# --- Tokens ---------------------------------------------------------------------------------------

class TokenCreateView(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]

    @extend_schema(
        operation_id="tokens_create",
        summary="Mint a short-lived JWT for a browser WebSocket connection",
        description="API-key authentication only. The token is EdDSA-signed (keys at /.well-known/jwks.json), "
        "lasts ttl_seconds (default 300, at most 3600) and is refused once its key is revoked.",
        request=TokenRequestSerializer,
        responses={201: TokenSerializer, 400: OpenApiResponse(description="Invalid body"),
                   403: OpenApiResponse(description="Not an API key (code api_key_required)"),
                   404: OpenApiResponse(description="deployment_not_found")},
    )
    def post(self, request):
        if not isinstance(request.auth, VerifiedKey):
            raise exceptions.PermissionDenied(
                {"code": "api_key_required", "message": "Tokens are minted with an API key, not a portal session."}
            )
        body = TokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            token, expires_at = token_mint(
                api_key_pk=request.auth.pk,
                ttl_seconds=data["ttl_seconds"],
                deployment_key=data.get("deployment"),
                single_use=data["single_use"],
                max_session_seconds=data.get("max_session_seconds"),
                session=data.get("session"),
            )
        except Deployment.DoesNotExist:
            raise exceptions.NotFound(
                {"code": "deployment_not_found", "message": "No deployment with that key in this key's environment."}
            ) from None
        except ValueError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from None
        except TokenRejected as exc:
            raise exceptions.AuthenticationFailed({"code": exc.reason, "message": exc.message}) from None
        response = Response(TokenSerializer({"token": token, "expires_at": expires_at}).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


# --- Agents ---------------------------------------------------------------------------------------

class AgentListView(APIView):
    @extend_schema(operation_id="agents_list", responses=AgentSerializer(many=True))
    def get(self, request, slug):
        access = _project_access(request, slug, write=False)
        return Response(AgentSerializer(selectors.agent_list(project=access.project), many=True).data)

    @extend_schema(operation_id="agents_create", request=AgentWriteSerializer, responses={201: AgentSerializer})
    def post(self, request, slug):
        access = _project_access(request, slug, write=True)
        body = AgentWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            agent = services.agent_create(project=access.project, data=dict(body.validated_data))
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(APIView):
    def _agent(self, request, slug, agent_id, *, write):
        access = _project_access(request, slug, write=write)
        try:
            return selectors.agent_get(project=access.project, agent_id=agent_id)
        except Agent.DoesNotExist:
            raise exceptions.NotFound() from None

    @extend_schema(operation_id="agents_retrieve", responses=AgentSerializer)
    def get(self, request, slug, agent_id):
        return Response(AgentSerializer(self._agent(request, slug, agent_id, write=False)).data)

    @extend_schema(operation_id="agents_update", request=AgentWriteSerializer, responses=AgentSerializer)
    def patch(self, request, slug, agent_id):
        agent = self._agent(request, slug, agent_id, write=True)
        body = AgentWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        try:
            agent = services.agent_update(agent=agent, data=dict(body.validated_data))
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response(AgentSerializer(agent).data)

    @extend_schema(operation_id="agents_destroy", responses={204: None})
    def delete(self, request, slug, agent_id):
        agent = self._agent(request, slug, agent_id, write=True)
        try:
            services.agent_delete(agent=agent)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"code": "agent_in_use", "message": exc.messages[0]}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Deployments ----------------------------------------------------------------------------------

def _agent_of(project: Project, agent_id: int) -> Agent:
    try:
        return selectors.agent_get(project=project, agent_id=agent_id)
    except Agent.DoesNotExist:
        raise exceptions.ValidationError({"agent": ["Choose an agent of this project."]}) from None


class DeploymentListView(APIView):
    @extend_schema(operation_id="deployments_list", responses=DeploymentSerializer(many=True))
    def get(self, request, slug):
        access = _project_access(request, slug, write=False)
        deployments = selectors.deployment_list(project=access.project, environment_id=access.environment_id)
        return Response(DeploymentSerializer(deployments, many=True).data)

    @extend_schema(operation_id="deployments_create", request=DeploymentWriteSerializer, responses={201: DeploymentSerializer})
    def post(self, request, slug):
        access = _project_access(request, slug, write=True)
        body = DeploymentWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = Environment.objects.get(project=access.project, kind=data["environment"])
        try:
            deployment = services.deployment_create(
                project=access.project, environment=environment, agent=_agent_of(access.project, data["agent"]),
                name=data["name"], is_default=data.get("is_default", False),
                task_upstream_url=data.get("task_upstream_url", ""),
            )
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailView(APIView):
    def _deployment(self, request, slug, deployment_id, *, write):
        access = _project_access(request, slug, write=write)
        try:
            deployment = selectors.deployment_get(
                project=access.project, deployment_id=deployment_id, environment_id=access.environment_id
            )
        except Deployment.DoesNotExist:
            raise exceptions.NotFound() from None
        return access, deployment

    @extend_schema(operation_id="deployments_retrieve", responses=DeploymentSerializer)
    def get(self, request, slug, deployment_id):
        _, deployment = self._deployment(request, slug, deployment_id, write=False)
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(
        operation_id="deployments_update",
        request=DeploymentWriteSerializer,
        responses=DeploymentSerializer,
        description="Change name, agent or task URL; {\"is_default\": true} makes it the environment's default. "
        "The environment cannot change.",
    )
    def patch(self, request, slug, deployment_id):
        access, deployment = self._deployment(request, slug, deployment_id, write=True)
        body = DeploymentWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if "environment" in data and data["environment"] != deployment.environment.kind:
            raise exceptions.ValidationError({"environment": ["A deployment's environment cannot change."]})
        if data.get("is_default") is False and deployment.is_default:
            raise exceptions.ValidationError(
                {"is_default": ["Make another deployment the default instead; every environment keeps one."]}
            )
        try:
            deployment = services.deployment_update(
                deployment=deployment, name=data.get("name"),
                agent=_agent_of(access.project, data["agent"]) if "agent" in data else None,
                task_upstream_url=data.get("task_upstream_url"),
            )
            if data.get("is_default"):
                deployment = services.deployment_set_default(deployment=deployment)
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(operation_id="deployments_destroy", responses={204: None})
    def delete(self, request, slug, deployment_id):
        _, deployment = self._deployment(request, slug, deployment_id, write=True)
        try:
            services.deployment_delete(deployment=deployment)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"code": "deployment_is_default", "message": exc.messages[0]}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

