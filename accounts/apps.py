from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from accounts.api import schema  # noqa: F401  (registers the API-key auth scheme with drf-spectacular)
