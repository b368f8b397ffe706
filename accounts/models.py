"""Tenancy and billing data: users, projects, memberships, environments, API keys, agents,
deployments and the usage ledger. Business rules live in services.py / selectors.py, not here."""
import uuid

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models import Q


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who signs in to the portal. The email address is the login."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self):
        return self.email


class Project(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="owned_projects")
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when an owner deletes the project: it is archived, not erased, so its billing history (the
    # ledger, statements) outlives it. Every selector of live projects leaves archived ones out.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="unique_membership")]

    def __str__(self):
        return f"{self.user} in {self.project} ({self.role})"


class EnvironmentKind(models.TextChoices):
    DEVELOPMENT = "development", "Development"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


# The short form used in API key prefixes: sb_<short>_...
ENVIRONMENT_SHORT = {
    EnvironmentKind.DEVELOPMENT: "dev",
    EnvironmentKind.STAGING: "stg",
    EnvironmentKind.PRODUCTION: "prod",
}


class Environment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    kind = models.CharField(max_length=12, choices=EnvironmentKind.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "kind"], name="unique_environment_kind")]
        ordering = ["id"]

    @property
    def short(self) -> str:
        return ENVIRONMENT_SHORT[self.kind]

    def __str__(self):
        return f"{self.project.slug}/{self.kind}"


def _new_key_id() -> str:
    return "key_" + uuid.uuid4().hex[:20]


class ApiKey(models.Model):
    """An API key. The secret itself is never stored: only its SHA-256 digest, a display prefix
    and the last four characters. ``key_id`` is stable across rotation so usage history follows it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_id = models.CharField(max_length=32, default=_new_key_id, db_index=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20)
    digest = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )
    # Set on the old key when it is rotated: it stays valid until then (the grace period).
    rotation_grace_ends_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last4}"

    def __str__(self):
        return f"{self.name} ({self.masked})"


class Provider(models.TextChoices):
    LOCAL = "local", "Local agent"
    OPENAI = "openai", "OpenAI"
    INWORLD = "inworld", "Inworld"
    CUSTOM = "custom", "Custom URL"


class Agent(models.Model):
    """A named upstream configuration. The credential is encrypted at rest and never shown back."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=10, choices=Provider.choices, default=Provider.LOCAL)
    url = models.CharField(max_length=500, blank=True)
    model = models.CharField(max_length=100, blank=True)
    voice = models.CharField(max_length=100, blank=True)
    instructions = models.TextField(blank=True)
    tools = models.JSONField(default=list, blank=True)
    header_template = models.JSONField(default=dict, blank=True)
    credential_encrypted = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_agent_name")]

    def __str__(self):
        return self.name


def _new_deployment_key() -> str:
    return "dep_" + uuid.uuid4().hex[:24]


class Deployment(models.Model):
    """Binds an agent to one environment; ``deployment_key`` is public (it is not a secret)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="deployments")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="deployments")
    name = models.CharField(max_length=100)
    deployment_key = models.CharField(max_length=40, unique=True, default=_new_deployment_key)
    is_default = models.BooleanField(default=False)
    task_upstream_url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"], condition=Q(is_default=True), name="one_default_deployment_per_environment"
            )
        ]

    def __str__(self):
        return self.name


class UsageRecord(models.Model):
    """The billing ledger. ``idempotency_key`` makes a retried write count once.
    Money is integer micro-units of the currency. Quantities are exact decimals in the metric's unit
    (seconds to the millisecond for *_seconds metrics; whole counts for tokens, messages, tasks)."""

    # PROTECT throughout: nothing may erase billing history (a deleted project is archived instead).
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="usage_records")
    key_id = models.CharField(max_length=32, db_index=True)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="usage_records")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="usage_records")
    session_id = models.CharField(max_length=100)
    dialect = models.CharField(max_length=20)
    metric = models.CharField(max_length=60)
    quantity = models.DecimalField(max_digits=20, decimal_places=3)
    unit_price_micros = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    occurred_at = models.DateTimeField(db_index=True)
    idempotency_key = models.CharField(max_length=200, unique=True)

    class Meta:
        indexes = [models.Index(fields=["project", "occurred_at"]), models.Index(fields=["key_id", "metric"])]


class Price(models.Model):
    """A unit price: micro-units of BILLING_CURRENCY per unit of ``metric`` (a second, token, message
    or task). ``project`` empty: the default price list; set: that project's override. ``tasks:*``
    prices every task type without a row of its own (see accounts.billing.prices)."""

    metric = models.CharField(max_length=60, help_text="session_seconds, audio_in_seconds, audio_out_seconds, "
                              "text_in_tokens, text_out_tokens, messages, tasks:* or tasks:<taskType>")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="prices",
                                help_text="Empty: the default price list. Set: an override for this project.")
    unit_price_micros = models.PositiveBigIntegerField(
        "unit price (micro-units)", help_text="Millionths of the currency per unit, e.g. 1000 = 0.001 per second.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project_id", "metric"]
        constraints = [
            models.UniqueConstraint(fields=["metric"], condition=Q(project__isnull=True), name="unique_default_price"),
            models.UniqueConstraint(fields=["project", "metric"], name="unique_project_price"),
        ]

    def clean(self):
        from django.core.exceptions import ValidationError

        from accounts.billing.metrics import TASKS_WILDCARD, metric_is_valid

        if not (self.metric == TASKS_WILDCARD or metric_is_valid(self.metric)):
            raise ValidationError({"metric": "Not a metric the ledger records: use session_seconds, audio_in_seconds, "
                                             "audio_out_seconds, text_in_tokens, text_out_tokens, messages, tasks:* "
                                             "or tasks:<taskType>."})
        duplicate = Price.objects.filter(metric=self.metric, project=self.project).exclude(pk=self.pk)
        if duplicate.exists():
            raise ValidationError({"metric": "This price list already has a price for this metric."})

    def __str__(self):
        return f"{self.metric} ({self.project.slug if self.project_id else 'default'})"


class Budget(models.Model):
    """An optional monthly spend limit (calendar month, UTC) in micro-units of BILLING_CURRENCY, for
    a whole project (``key_id`` empty) or one key (its stable ``key_id``, so it survives rotation)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="budgets")
    key_id = models.CharField(max_length=32, blank=True, help_text="Empty: the whole project.")
    monthly_limit_micros = models.PositiveBigIntegerField("monthly limit (micro-units)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project_id", "key_id"]
        constraints = [models.UniqueConstraint(fields=["project", "key_id"], name="unique_budget")]

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.key_id and self.project_id and not ApiKey.objects.filter(project_id=self.project_id,
                                                                         key_id=self.key_id).exists():
            raise ValidationError({"key_id": "This project has no key with that key id."})

    def __str__(self):
        return f"{self.project.slug}/{self.key_id or 'project'}"


class MonthlySpend(models.Model):
    """What a key has cost in a calendar month (UTC), kept in step with the ledger: every ledger write
    adds its cost here in the same transaction, so budgets read a few rows instead of summing the
    month's ledger."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="monthly_spend")
    key_id = models.CharField(max_length=32)
    month = models.DateField(help_text="The first day of the month (UTC).")
    cost_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key_id", "month"], name="unique_monthly_spend")]


class BudgetAlert(models.Model):
    """A budget alert email that was sent: one per budget (project or key), month and threshold, so a
    threshold is announced once a month whichever process noticed it first."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="budget_alerts")
    key_id = models.CharField(max_length=32, blank=True, help_text="Empty: the project's budget.")
    month = models.DateField(help_text="The first day of the month (UTC).")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the monthly limit: 50, 80 or 100.")
    spent_micros = models.BigIntegerField()
    limit_micros = models.BigIntegerField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key_id", "month", "threshold"],
                                               name="unique_budget_alert")]


class Invitation(models.Model):
    """An invitation by email to join a project, for someone who may not have an account yet. The
    token is sent once in the email; only its SHA-256 digest is kept. Accepted when the invitee, signed
    in with this address, accepts it, or when they verify this address after signing up."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
