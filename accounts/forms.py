"""Portal forms: they parse and label inputs; the rules are in accounts.services."""
from django import forms

from accounts.models import EnvironmentKind, Role
from accounts.services import NAME_MAX_LENGTH

GRACE_CHOICES = [("none", "None: the old key stops working now"), ("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days")]


class ProjectForm(forms.Form):
    name = forms.CharField(label="Project name", max_length=NAME_MAX_LENGTH)


class KeyCreateForm(forms.Form):
    name = forms.CharField(label="Key name", max_length=NAME_MAX_LENGTH)
    environment = forms.CharField(label="Environment", widget=forms.Select(choices=EnvironmentKind.choices))
    expires_at = forms.DateTimeField(
        label="Expires (optional, UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )


class KeyRotateForm(forms.Form):
    grace = forms.CharField(
        label="Keep the old key working for",
        widget=forms.RadioSelect(choices=GRACE_CHOICES),
        initial="24h",
    )


class InviteForm(forms.Form):
    email = forms.CharField(label="Email", max_length=254, widget=forms.EmailInput,
                            help_text="Someone without an account gets an email inviting them to sign up.")
    role = forms.CharField(label="Role", widget=forms.Select(choices=Role.choices), initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.CharField(label="Role", widget=forms.Select(choices=Role.choices))


class DeleteProjectForm(forms.Form):
    confirm = forms.CharField(label="Type the project slug to confirm", max_length=100)
