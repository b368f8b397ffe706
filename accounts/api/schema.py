"""OpenAPI description of API-key authentication (imported from AccountsConfig.ready so that
drf-spectacular knows it before any schema is generated)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ApiKeyAuthentication"
    name = "apiKey"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (sb_<env>_...) as `Authorization: Bearer <key>`, or as HTTP Basic "
                           "with the key as the user name (`Basic base64(<key>:)`) or alone (`Basic base64(<key>)`).",
        }


def schema_without_slash_aliases(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: one path per endpoint, the canonical one without a trailing
    slash (project/urls.py adds slashed aliases for older clients)."""
    return [endpoint for endpoint in endpoints if not (endpoint[0].startswith("/api/v1/") and endpoint[0].endswith("/"))]
