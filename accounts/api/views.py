"""REST API views: parse, call a service or selector, render. Portal users act through their
membership; an API-key caller only ever sees its own project, read-only."""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.api import serializers as s
from accounts.api.authentication import ApiKeyPrincipal
from accounts.exceptions import NotAllowed
from accounts.models import Membership, Project


def is_key_caller(request) -> bool:
    return isinstance(request.user, ApiKeyPrincipal)


def project_for_caller(request, slug: str) -> tuple[Project, Membership | None]:
    """The project ``slug`` as the caller may see it (Http404 otherwise) and the caller's membership
    (None for an API-key caller)."""
    if is_key_caller(request):
        return selectors.project_get_for_key(project_id=request.user.key.project_id, slug=slug), None
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    return membership.project, membership


def membership_for_caller(request, slug: str) -> Membership:
    """Managing a project needs a signed-in person; an API key may only read its own project."""
    _project, membership = project_for_caller(request, slug)
    if membership is None:
        raise NotAllowed("session_required", "This action needs a signed-in portal user, not an API key.")
    return membership


def _parse(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _render_project(project: Project, role: str | None):
    return s.ProjectSerializer(project, context={"role": role}).data


class MeView(APIView):
    @extend_schema(responses=s.MeSerializer, summary="Who is calling: the API key's project, environment and key id")
    def get(self, request):
        if is_key_caller(request):
            key = request.user.key
            project = selectors.project_get_for_key(project_id=key.project_id, slug=key.project_slug)
            return Response({
                "kind": "api_key",
                "project": {"slug": project.slug, "name": project.name},
                "environment": key.environment,
                "key_id": key.key_id,
                "key_name": key.name,
            })
        return Response({"kind": "user", "email": request.user.email})


class ProjectListView(APIView):
    @extend_schema(responses=s.ProjectSerializer(many=True))
    def get(self, request):
        if is_key_caller(request):
            project = selectors.project_get_for_key(
                project_id=request.user.key.project_id, slug=request.user.key.project_slug
            )
            return Response([_render_project(project, None)])
        memberships = Membership.objects.filter(user=request.user).select_related("project", "project__owner")
        roles = {m.project_id: m.role for m in memberships}
        projects = selectors.project_list_for_user(user=request.user).prefetch_related("environments").select_related("owner")
        return Response([_render_project(p, roles.get(p.pk)) for p in projects])

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        if is_key_caller(request):
            raise NotAllowed("session_required", "This action needs a signed-in portal user, not an API key.")
        data = _parse(s.ProjectCreateSerializer, request)
        project = services.project_create(name=data["name"], slug=data.get("slug"), owner=request.user)
        return Response(_render_project(project, "owner"), status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    @extend_schema(responses=s.ProjectSerializer)
    def get(self, request, slug):
        project, membership = project_for_caller(request, slug)
        return Response(_render_project(project, membership.role if membership else None))

    @extend_schema(request=s.ProjectRenameSerializer, responses=s.ProjectSerializer)
    def patch(self, request, slug):
        membership = membership_for_caller(request, slug)
        data = _parse(s.ProjectRenameSerializer, request)
        project = services.project_rename(by=membership, name=data["name"])
        return Response(_render_project(project, membership.role))

    @extend_schema(responses={204: OpenApiResponse(description="Deleted")})
    def delete(self, request, slug):
        services.project_delete(by=membership_for_caller(request, slug))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(APIView):
    @extend_schema(responses=s.MemberSerializer(many=True))
    def get(self, request, slug):
        membership = membership_for_caller(request, slug)
        return Response(s.MemberSerializer(selectors.membership_list(project=membership.project), many=True).data)

    @extend_schema(request=s.MemberInviteSerializer, responses={201: s.MemberSerializer})
    def post(self, request, slug):
        membership = membership_for_caller(request, slug)
        data = _parse(s.MemberInviteSerializer, request)
        invited = services.membership_invite(by=membership, email=data["email"], role=data["role"])
        return Response(s.MemberSerializer(invited).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    @extend_schema(request=s.MemberRoleSerializer, responses=s.MemberSerializer)
    def patch(self, request, slug, member_id):
        membership = membership_for_caller(request, slug)
        target = selectors.membership_get(project=membership.project, pk=member_id)
        data = _parse(s.MemberRoleSerializer, request)
        target = services.membership_change_role(by=membership, membership=target, role=data["role"])
        return Response(s.MemberSerializer(target).data)

    @extend_schema(responses={204: OpenApiResponse(description="Removed (or left, when it is your own membership)")})
    def delete(self, request, slug, member_id):
        membership = membership_for_caller(request, slug)
        target = selectors.membership_get(project=membership.project, pk=member_id)
        services.membership_remove(by=membership, membership=target)
        return Response(status=status.HTTP_204_NO_CONTENT)


class KeyListView(APIView):
    @extend_schema(responses=s.ApiKeySerializer(many=True))
    def get(self, request, slug):
        membership = membership_for_caller(request, slug)
        return Response(s.ApiKeySerializer(selectors.api_key_list(project=membership.project), many=True).data)

    @extend_schema(request=s.KeyCreateSerializer, responses={201: s.ApiKeyWithSecretSerializer})
    def post(self, request, slug):
        membership = membership_for_caller(request, slug)
        data = _parse(s.KeyCreateSerializer, request)
        api_key, secret = services.api_key_issue(
            by=membership, environment=data["environment"], name=data["name"], expires_at=data["expires_at"]
        )
        body = s.ApiKeyWithSecretSerializer(api_key, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class KeyDetailView(APIView):
    @extend_schema(responses=s.ApiKeySerializer)
    def get(self, request, slug, key_pk):
        membership = membership_for_caller(request, slug)
        return Response(s.ApiKeySerializer(selectors.api_key_get(project=membership.project, pk=key_pk)).data)


class KeyRevokeView(APIView):
    @extend_schema(request=None, responses=s.ApiKeySerializer)
    def post(self, request, slug, key_pk):
        membership = membership_for_caller(request, slug)
        api_key = selectors.api_key_get(project=membership.project, pk=key_pk)
        return Response(s.ApiKeySerializer(services.api_key_revoke_by(by=membership, api_key=api_key)).data)


class KeyRotateView(APIView):
    @extend_schema(request=s.KeyRotateSerializer, responses={201: s.ApiKeyWithSecretSerializer})
    def post(self, request, slug, key_pk):
        membership = membership_for_caller(request, slug)
        api_key = selectors.api_key_get(project=membership.project, pk=key_pk)
        data = _parse(s.KeyRotateSerializer, request)
        new_key, secret = services.api_key_rotate_by(by=membership, api_key=api_key, grace=data["grace"])
        body = s.ApiKeyWithSecretSerializer(new_key, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})
