from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from allauth.account.signals import email_confirmed

        from accounts.api import schema  # noqa: F401  (registers the API-key auth scheme with drf-spectacular)

        email_confirmed.connect(_accept_invitations, dispatch_uid="accounts-accept-invitations")


def _accept_invitations(sender, request, email_address, **kwargs):
    """Someone verified an address: the invitations waiting for it make them a member."""
    from accounts.invitations import invitation_accept_pending

    invitation_accept_pending(user=email_address.user, email=email_address.email)
