"""REST shapes for tokens, agents and deployments. Parsing only: the rules are in services.py."""
from rest_framework import serializers

from accounts.models import Agent, Deployment, EnvironmentKind, Provider
from realtime.agents.services import TOKEN_MAX_TTL_SECONDS
from realtime.gateway.tokens import TOKEN_DEFAULT_TTL_SECONDS


class TokenRequestSerializer(serializers.Serializer):
    ttl_seconds = serializers.IntegerField(min_value=1, max_value=TOKEN_MAX_TTL_SECONDS, default=TOKEN_DEFAULT_TTL_SECONDS)
    deployment = serializers.CharField(required=False, allow_null=True, max_length=40,
                                       help_text="A deployment key of the API key's environment; the token reaches only it.")
    single_use = serializers.BooleanField(default=False, help_text="Refuse the token's second use.")
    max_session_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                                   help_text="The gateway ends a session opened with this token after this long.")
    session = serializers.JSONField(required=False, allow_null=True,
                                    help_text="Session configuration applied when the session opens (a JSON object).")

    def validate_session(self, value):
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class AgentSerializer(serializers.ModelSerializer):
    """What is shown back: never the credential, only whether one is set."""

    credential_set = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = ["id", "name", "provider", "url", "model", "voice", "instructions", "tools", "header_template",
                  "credential_set", "created_at"]
        read_only_fields = fields

    def get_credential_set(self, agent) -> bool:
        return bool(agent.credential_encrypted)


class AgentWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    provider = serializers.ChoiceField(choices=Provider.choices, default=Provider.LOCAL)
    url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    voice = serializers.CharField(max_length=100, required=False, allow_blank=True)
    instructions = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    tools = serializers.JSONField(required=False, help_text='A list of {"type": "function", "name", "description", "parameters"}.')
    header_template = serializers.JSONField(required=False, help_text="Header name to value; {credential} is replaced by the credential.")
    credential = serializers.CharField(required=False, allow_blank=True, allow_null=True, write_only=True,
                                       trim_whitespace=False,
                                       help_text='Write-only. Omit to keep the stored one; "" clears it.')


class DeploymentSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.kind")
    agent = serializers.IntegerField(source="agent_id")
    agent_name = serializers.CharField(source="agent.name")

    class Meta:
        model = Deployment
        fields = ["id", "name", "deployment_key", "environment", "agent", "agent_name", "is_default",
                  "task_upstream_url", "created_at"]
        read_only_fields = fields


class DeploymentWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    environment = serializers.ChoiceField(choices=EnvironmentKind.choices, help_text="Fixed once created.")
    agent = serializers.IntegerField(help_text="The id of an agent of this project.")
    is_default = serializers.BooleanField(required=False, help_text="Make this the environment's default deployment.")
    task_upstream_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
