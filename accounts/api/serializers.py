"""Shapes of API input and output. Input serializers only parse types; the rules (lengths, roles,
known environments, duplicates) live in accounts.services so the portal and the API agree."""
from rest_framework import serializers

from accounts.models import ApiKey, Membership, Project
from accounts.selectors import api_key_status


def _text(**kwargs):
    # Blank and untrimmed on purpose: services give the specific error (empty_name, name_too_long...).
    return serializers.CharField(allow_blank=True, trim_whitespace=False, **kwargs)


class ProjectCreateSerializer(serializers.Serializer):
    name = _text()
    slug = _text(required=False)


class ProjectRenameSerializer(serializers.Serializer):
    name = _text()


class MemberInviteSerializer(serializers.Serializer):
    email = _text()
    role = _text(required=False, default="member")


class MemberRoleSerializer(serializers.Serializer):
    role = _text()


class KeyCreateSerializer(serializers.Serializer):
    name = _text()
    environment = _text()
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class KeyRotateSerializer(serializers.Serializer):
    grace = serializers.CharField(help_text="none, 1h, 24h or 7d")


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    environments = serializers.SerializerMethodField()
    owner = serializers.EmailField(source="owner.email", read_only=True)

    class Meta:
        model = Project
        fields = ["slug", "name", "owner", "role", "environments", "created_at"]

    def get_role(self, project) -> str | None:
        return self.context.get("role")

    def get_environments(self, project) -> list[str]:
        return [env.kind for env in project.environments.all()]


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]


class ApiKeySerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.kind", read_only=True)
    display = serializers.CharField(source="masked", read_only=True)
    status = serializers.SerializerMethodField()
    rotated_from = serializers.UUIDField(source="rotated_from_id", read_only=True, allow_null=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "key_id", "name", "environment", "display", "prefix", "last4", "status",
            "created_at", "last_used_at", "expires_at", "revoked_at", "rotation_grace_ends_at", "rotated_from",
        ]

    def get_status(self, api_key) -> str:
        return api_key_status(api_key=api_key)


class ApiKeyWithSecretSerializer(ApiKeySerializer):
    """Only in the response that creates the key: the secret is never retrievable again."""

    secret = serializers.SerializerMethodField()

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["secret"]

    def get_secret(self, api_key) -> str:
        return self.context["secret"]


class MeSerializer(serializers.Serializer):
    kind = serializers.CharField()
    project = serializers.DictField(required=False)
    environment = serializers.CharField(required=False)
    key_id = serializers.CharField(required=False)
    key_name = serializers.CharField(required=False)
    email = serializers.EmailField(required=False)
