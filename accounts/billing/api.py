"""REST: usage (``GET /api/v1/usage``) for portal sessions and API keys, and a project's budgets
(``/api/v1/projects/<slug>/budgets``, portal sessions). Parse, call accounts.billing, render."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors
from accounts.api.views import is_key_caller, membership_for_caller
from accounts.billing import budgets
from accounts.billing.money import currency, money_format
from accounts.billing.usage import GROUPS, usage_key_labels, usage_lines, usage_period_parse, usage_rollup
from accounts.exceptions import InvalidInput
from accounts.models import EnvironmentKind


def _decimal_text(value) -> str:
    return format(value.normalize(), "f") if value else "0"


class UsageGroupSerializer(serializers.Serializer):
    date = serializers.DateField(required=False, help_text="group_by=day: the UTC day")
    key_id = serializers.CharField(required=False, help_text="group_by=key: the key id (stable across rotation)")
    key_name = serializers.CharField(required=False)
    environment = serializers.CharField(required=False, help_text="group_by=environment (and key)")
    metric = serializers.CharField(required=False, help_text="group_by=metric")
    usage = serializers.DictField(child=serializers.CharField(), help_text="Quantity per metric, exact decimal strings")
    cost_micros = serializers.IntegerField(help_text="Cost in micro-units of the currency")
    cost = serializers.CharField(help_text="The cost for display, e.g. $1.23")


USAGE_RESPONSE = inline_serializer("Usage", fields={
    "project": serializers.CharField(),
    "environment": serializers.CharField(allow_null=True, help_text="null: every environment"),
    "from": serializers.DateField(),
    "to": serializers.DateField(),
    "group_by": serializers.CharField(),
    "currency": serializers.CharField(help_text="ISO 4217 code of every amount"),
    "total_cost_micros": serializers.IntegerField(),
    "results": UsageGroupSerializer(many=True),
})


PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="First UTC day (default: the 1st of this month)"),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Last UTC day, inclusive (default: today); at most 366 days"),
    OpenApiParameter("group_by", str, enum=list(GROUPS), description="default: day"),
    OpenApiParameter("project", str, description="Project slug: required for portal sessions; an API key's own "
                     "project otherwise"),
    OpenApiParameter("environment", str, enum=list(EnvironmentKind.values),
                     description="Only this environment (an API key always sees only its own)"),
]


class UsageView(APIView):
    @extend_schema(
        operation_id="usage_list", summary="Usage and cost of a project, grouped by day, key, environment or metric",
        parameters=PARAMETERS, responses={
            200: USAGE_RESPONSE,
            400: OpenApiResponse(description="invalid_date, invalid_range, range_too_long, invalid_group_by, "
                                             "unknown_environment, project_required"),
            403: OpenApiResponse(description="environment_forbidden: an API key asked for another environment"),
            404: OpenApiResponse(description="No such project (or not yours)"),
        })
    def get(self, request):
        query = request.query_params
        start, end = usage_period_parse(start=query.get("from") or None, end=query.get("to") or None)
        group_by = query.get("group_by") or "day"
        if group_by not in GROUPS:
            raise InvalidInput("invalid_group_by", f"group_by must be one of {', '.join(GROUPS)}.", field="group_by")
        environment = query.get("environment") or None
        if environment is not None and environment not in EnvironmentKind.values:
            raise InvalidInput("unknown_environment", "environment must be one of "
                               f"{', '.join(EnvironmentKind.values)}.", field="environment")
        if is_key_caller(request):
            key = request.user.key
            project = selectors.project_get_for_key(project_id=key.project_id, slug=query.get("project") or key.project_slug)
            if environment not in (None, key.environment):
                raise PermissionDenied({"code": "environment_forbidden",
                                        "message": "An API key sees the usage of its own environment only."})
            environment = key.environment
        else:
            if not query.get("project"):
                raise InvalidInput("project_required", "Name the project: ?project=<slug>.", field="project")
            project = selectors.membership_get_for_user(user=request.user, slug=query["project"]).project
        lines = usage_lines(project_id=project.pk, start=start, end=end, environment=environment)
        labels = usage_key_labels(project=project) if group_by == "key" else {}
        results = []
        for group in usage_rollup(lines, group_by=group_by):
            row = {"usage": {metric: _decimal_text(q) for metric, q in group.quantities.items()},
                   "cost_micros": group.cost_micros, "cost": money_format(group.cost_micros)}
            if group_by == "day":
                row["date"] = group.value.isoformat()
            elif group_by == "key":
                label = labels.get(group.value)
                row.update(key_id=group.value, key_name=label.name if label else "",
                           environment=label.environment if label else "")
            else:
                row[group_by] = group.value
            results.append(row)
        return Response({
            "project": project.slug, "environment": environment, "from": start.isoformat(), "to": end.isoformat(),
            "group_by": group_by, "currency": currency(), "total_cost_micros": sum(line.cost_micros for line in lines),
            "results": results,
        })


class BudgetLineSerializer(serializers.Serializer):
    key_id = serializers.CharField(allow_null=True, help_text="null: the whole project")
    name = serializers.CharField()
    environment = serializers.CharField(allow_null=True)
    monthly_limit_micros = serializers.IntegerField(allow_null=True, help_text="null: no limit")
    spent_micros = serializers.IntegerField(help_text="This calendar month (UTC), from the ledger")
    exceeded = serializers.BooleanField()


class BudgetsSerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM (UTC)")
    currency = serializers.CharField()
    project = BudgetLineSerializer()
    keys = BudgetLineSerializer(many=True)


class BudgetSetSerializer(serializers.Serializer):
    key_id = serializers.CharField(required=False, allow_null=True, default=None,
                                   help_text="A key id of the project; omitted or null: the project's own budget")
    monthly_limit_micros = serializers.IntegerField(allow_null=True, min_value=0,
                                                    help_text="Micro-units of the currency; null removes the limit")


def _budget_line(line: budgets.BudgetLine) -> dict:
    return {"key_id": line.key_id or None, "name": line.name, "environment": line.environment or None,
            "monthly_limit_micros": line.limit_micros, "spent_micros": line.spent_micros, "exceeded": line.exceeded}


def _budgets_body(project) -> dict:
    overview = budgets.budget_overview(project=project)
    return {"month": overview.month.strftime("%Y-%m"), "currency": currency(),
            "project": _budget_line(overview.project), "keys": [_budget_line(line) for line in overview.keys]}


class BudgetListView(APIView):
    @extend_schema(operation_id="budgets_list", summary="Monthly budgets and this month's spend",
                   responses=BudgetsSerializer)
    def get(self, request, slug):
        return Response(_budgets_body(membership_for_caller(request, slug).project))

    @extend_schema(operation_id="budgets_set", summary="Set or remove the monthly budget of the project or one key "
                   "(owners and admins)", request=BudgetSetSerializer, responses=BudgetsSerializer)
    def put(self, request, slug):
        membership = membership_for_caller(request, slug)
        body = BudgetSetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        budgets.budget_set(by=membership, key_id=body.validated_data["key_id"],
                           monthly_limit_micros=body.validated_data["monthly_limit_micros"])
        return Response(_budgets_body(membership.project))
