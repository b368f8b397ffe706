"""Django admin for operators. API keys show only their digest, prefix and last four characters:
the secret is never stored, so it can never be shown here."""
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.billing.budgets import budget_cache
from accounts.billing.metrics import metric_unit_singular
from accounts.billing.money import money_format
from accounts.billing.prices import price_cache
from accounts.models import (
    Agent,
    ApiKey,
    Budget,
    Deployment,
    Environment,
    Membership,
    Price,
    Project,
    UsageRecord,
    User,
)
from accounts.services import api_key_revoke


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "is_staff", "is_active", "date_joined"]
    search_fields = ["email"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "owner", "created_at"]
    search_fields = ["name", "slug", "owner__email"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "project__slug"]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["project", "kind"]
    list_filter = ["kind"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "masked", "project", "environment", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["environment__kind"]
    search_fields = ["name", "key_id", "prefix", "project__slug"]
    readonly_fields = [
        "id", "key_id", "project", "environment", "prefix", "digest", "last4", "created_by", "created_at",
        "last_used_at", "rotated_from", "rotation_grace_ends_at", "revoked_at",
    ]
    fields = readonly_fields[:3] + ["name"] + readonly_fields[3:] + ["expires_at"]
    # revoked_at is read-only: revoking goes through the revoke service (cache, live sessions' notice).
    actions = ["revoke"]

    @admin.action(description="Revoke the selected keys (live sessions are closed)")
    def revoke(self, request, queryset):
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.")

    def has_add_permission(self, request):
        # A key made here would have no secret anyone could see: create keys in the portal, API or createkey.
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "provider", "model"]
    list_filter = ["provider"]
    exclude = ["credential_encrypted"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "environment", "agent", "deployment_key", "is_default"]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    """The price list: rows without a project are the defaults, rows with one are its overrides.
    A change applies to usage flushed from at most accounts.billing.prices.PRICE_CACHE_SECONDS later."""

    list_display = ["metric", "price_list", "unit_price_micros", "unit_price", "updated_at"]
    list_filter = [("project", admin.EmptyFieldListFilter)]
    search_fields = ["metric", "project__slug"]
    autocomplete_fields = ["project"]
    ordering = ["project__slug", "metric"]

    @admin.display(description="price list", ordering="project__slug")
    def price_list(self, obj):
        return obj.project.slug if obj.project_id else "default"

    @admin.display(description="unit price")
    def unit_price(self, obj):
        return f"{money_format(obj.unit_price_micros, exact=True)} per {metric_unit_singular(obj.metric)}"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        price_cache.clear()


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["project", "budget_for", "monthly_limit_micros", "monthly_limit", "updated_at"]
    search_fields = ["project__slug", "key_id"]
    autocomplete_fields = ["project"]

    @admin.display(description="for", ordering="key_id")
    def budget_for(self, obj):
        return obj.key_id or "whole project"

    @admin.display(description="monthly limit")
    def monthly_limit(self, obj):
        return money_format(obj.monthly_limit_micros)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        budget_cache.invalidate(obj.project_id)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        budget_cache.invalidate(obj.project_id)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "project", "key_id", "dialect", "metric", "quantity", "unit_price_micros",
                    "cost_micros"]
    list_filter = ["dialect", "metric"]
    search_fields = ["key_id", "session_id", "project__slug"]

    def get_readonly_fields(self, request, obj=None):
        # The ledger is append-only history.
        return [f.name for f in self.model._meta.fields]
