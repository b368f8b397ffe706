"""``manage.py createkey --project SLUG --env development --name NAME [--owner EMAIL]``: prints only
the new key on stdout so scripts can capture it. With --owner, the user and project are created
when absent (the user gets an unusable password: they can set one with password reset)."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.exceptions import ServiceError
from accounts.models import EnvironmentKind, Membership, Project, Role, User
from accounts.services import api_key_issue, project_create


class Command(BaseCommand):
    help = "Create an API key and print only the key."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--env", required=True, choices=EnvironmentKind.values, help="environment")
        parser.add_argument("--name", required=True, help="key name")
        parser.add_argument("--owner", help="owner email; creates the user and project when absent")

    @transaction.atomic
    def handle(self, *args, project: str, env: str, name: str, owner: str | None, **options):
        try:
            membership = self._owner_membership(slug=project, owner_email=owner)
            _row, secret = api_key_issue(by=membership, environment=env, name=name)
        except ServiceError as error:
            raise CommandError(f"{error.code}: {error.message}") from None
        self.stdout.write(secret)

    def _owner_membership(self, *, slug: str, owner_email: str | None) -> Membership:
        project = Project.objects.filter(slug=slug).first()
        if owner_email is None:
            if project is None:
                raise CommandError(f"no project with slug {slug!r} (pass --owner EMAIL to create it)")
            membership = project.memberships.filter(role=Role.OWNER).select_related("user", "project").first()
            if membership is None:
                raise CommandError(f"project {slug!r} has no owner")
            return membership
        owner_email = owner_email.strip().lower()
        try:
            validate_email(owner_email)
        except ValidationError:
            raise CommandError(f"invalid_email: {owner_email!r} is not a valid email address") from None
        user = User.objects.filter(email__iexact=owner_email).first()
        if user is None:
            user = User.objects.create_user(email=owner_email, password=None)
        if project is None:
            project = project_create(name=slug, slug=slug, owner=user)
        membership = project.memberships.select_related("user", "project").filter(user=user).first()
        if membership is None or membership.role != Role.OWNER:
            raise CommandError(f"{owner_email} is not an owner of project {slug!r}")
        return membership
