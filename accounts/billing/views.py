"""Portal pages of usage and billing: the project dashboard, a key's page, CSV export, the monthly
statement and budgets. Parse, call accounts.billing, render; every page goes through the membership
selector, so another tenant's project (or key) is a 404."""
from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.billing import budgets
from accounts.billing.chart import stacked_bars_svg
from accounts.billing.metrics import METRICS, metric_is_valid, metric_label, metric_unit, quantity_text
from accounts.billing.money import currency, money_decimal, money_format, money_parse
from accounts.billing.reports import BREAKDOWNS, COST, usage_report
from accounts.billing.statements import statement_get
from accounts.billing.usage import (
    month_first,
    today,
    usage_key_labels,
    usage_lines,
    usage_month_parse,
    usage_months,
    usage_period_parse,
)
from accounts.exceptions import InvalidInput, ServiceError
from accounts.models import EnvironmentKind
from accounts.selectors import MANAGER_ROLES, membership_get_for_user, project_archived_get, project_archived_list


@dataclass(frozen=True)
class Filters:
    start: dt.date
    end: dt.date
    breakdown: str
    measure: str
    environment: str | None

    def query(self, **changes) -> str:
        values = {"from": self.start.isoformat(), "to": self.end.isoformat(), "by": self.breakdown,
                  "show": self.measure, "environment": self.environment or ""}
        values.update(changes)
        return urlencode({name: value for name, value in values.items() if value})


def _filters(request, *, default_breakdown: str = "metric") -> tuple[Filters, str | None]:
    """The page's filters from its query string, and an error message when one was not usable (the
    page then shows this month instead)."""
    query = request.GET
    error = None
    try:
        start, end = usage_period_parse(start=query.get("from") or None, end=query.get("to") or None)
    except InvalidInput as exc:
        error = exc.message
        start, end = usage_period_parse(start=None, end=None)
    breakdown = query.get("by") if query.get("by") in BREAKDOWNS else default_breakdown
    measure = query.get("show") or COST
    if measure != COST and not metric_is_valid(measure):
        error, measure = f"Unknown measure {measure[:60]!r}; showing cost.", COST
    environment = query.get("environment") or None
    if environment is not None and environment not in EnvironmentKind.values:
        error, environment = f"Unknown environment {environment[:30]!r}; showing all.", None
    return Filters(start, end, breakdown, measure, environment), error


def _value_text(measure: str):
    if measure == COST:
        return money_format
    return lambda thousandths: quantity_text(Decimal(thousandths) / 1000, measure)


def _ranges(today_: dt.date) -> list[tuple[str, dt.date, dt.date]]:
    this_month = month_first(today_)
    last_month = month_first(this_month - dt.timedelta(days=1))
    return [("This month", this_month, today_), ("Last 7 days", today_ - dt.timedelta(days=6), today_),
            ("Last 30 days", today_ - dt.timedelta(days=29), today_),
            ("Last month", last_month, this_month - dt.timedelta(days=1))]


def _report_context(*, project, filters: Filters, key_id: str | None = None) -> dict:
    lines = usage_lines(project_id=project.pk, start=filters.start, end=filters.end,
                        environment=filters.environment, key_id=key_id)
    keys = usage_key_labels(project=project)
    report = usage_report(lines=lines, start=filters.start, end=filters.end, breakdown=filters.breakdown,
                          measure=filters.measure, keys=keys)
    what = "Cost" if filters.measure == COST else f"{metric_label(filters.measure)} ({metric_unit(filters.measure)})"
    by = BREAKDOWNS[filters.breakdown].lower()
    chart = stacked_bars_svg(
        days=report.days, series=report.series, value_text=_value_text(filters.measure),
        title=f"{what} per day, by {by}",
        description=f"Stacked bars, one per UTC day from {filters.start:%d %b %Y} to {filters.end:%d %b %Y}; "
                    "the same numbers are in the data table beside the chart.")
    value_text = _value_text(filters.measure)
    table = [{"day": day, "values": [value_text(s.values[n]) if s.values[n] else "" for s in report.series],
              "total": value_text(report.day_totals[n]) if report.day_totals[n] else "—"}
             for n, day in enumerate(report.days)]
    metrics = list(dict.fromkeys([*METRICS, *report.metrics]))
    if filters.measure != COST and filters.measure not in metrics:
        metrics.append(filters.measure)
    measures = [(COST, "Cost")] + [(metric, metric_label(metric)) for metric in metrics]
    return {
        "filters": filters, "report": report, "chart": chart, "table": table,
        "table_total": value_text(sum(report.day_totals)), "measure_label": what, "measures": measures,
        "breakdowns": BREAKDOWNS.items(), "environments": EnvironmentKind.choices, "ranges": _ranges(today()),
        "currency": currency(), "flush_seconds": f"{settings.REALTIME_METER_FLUSH_SECONDS:g}",
    }


def _page(membership, **extra) -> dict:
    return {"membership": membership, "project": membership.project, "this_month": today().strftime("%Y-%m"),
            "can_manage": membership.role in MANAGER_ROLES, **extra}


@login_required
@require_GET
def usage_dashboard(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    project = membership.project
    filters, error = _filters(request)
    context = _report_context(project=project, filters=filters)
    context.update(overview=budgets.budget_overview(project=project), months=usage_months(project_id=project.pk),
                   error=error)
    return render(request, "billing/usage.html", _page(membership, **context), status=400 if error else 200)


@login_required
@require_GET
def usage_key(request, slug, key_id):
    membership = membership_get_for_user(user=request.user, slug=slug)
    project = membership.project
    keys = usage_key_labels(project=project)
    if key_id not in keys:
        raise Http404("No such key.")
    filters, error = _filters(request)
    filters = Filters(filters.start, filters.end, "metric", filters.measure, filters.environment)
    context = _report_context(project=project, filters=filters, key_id=key_id)
    overview = budgets.budget_overview(project=project)
    context.update(key=keys[key_id], budget=next(line for line in overview.keys if line.key_id == key_id),
                   overview=overview, error=error)
    return render(request, "billing/usage_key.html", _page(membership, **context), status=400 if error else 200)


def _csv_text(value: str) -> str:
    """A name as a spreadsheet cell that cannot be read as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


CSV_COLUMNS = ["date", "environment", "key_id", "key_name", "metric", "unit", "quantity", "unit_price_micros",
               "cost_micros", "cost", "currency"]


@login_required
@require_GET
def usage_csv(request, slug):
    """The ledger over a range, one row per UTC day, environment, key, metric and unit price."""
    membership = membership_get_for_user(user=request.user, slug=slug)
    project = membership.project
    try:
        start, end = usage_period_parse(start=request.GET.get("from") or None, end=request.GET.get("to") or None)
    except InvalidInput as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    environment = request.GET.get("environment") or None
    if environment is not None and environment not in EnvironmentKind.values:
        return HttpResponse("Unknown environment.", status=400, content_type="text/plain; charset=utf-8")
    keys = usage_key_labels(project=project)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-usage-{start}-to-{end}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for line in usage_lines(project_id=project.pk, start=start, end=end, environment=environment):
        label = keys.get(line.key_id)
        writer.writerow([
            line.day.isoformat(), line.environment, line.key_id, _csv_text(label.name) if label else "", line.metric,
            metric_unit(line.metric), format(line.quantity.normalize(), "f") if line.quantity else "0",
            line.unit_price_micros, line.cost_micros, format(money_decimal(line.cost_micros), "f"), currency(),
        ])
    return response


@login_required
@require_GET
def usage_statement(request, slug, month):
    membership = membership_get_for_user(user=request.user, slug=slug)
    try:
        first = usage_month_parse(month)
    except InvalidInput:
        raise Http404("No such month.") from None
    statement = statement_get(project=membership.project, month=first)
    return render(request, "billing/statement.html", _page(
        membership, statement=statement, currency=currency(), months=usage_months(project_id=membership.project.pk)))


@login_required
@require_http_methods(["GET", "POST"])
def usage_budgets(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    status, error = 200, None
    if request.method == "POST":
        key_id = request.POST.get("key_id") or None
        text = (request.POST.get("limit") or "").strip()
        try:
            if request.POST.get("remove"):
                text = ""
            try:
                limit = money_parse(text) if text else None
            except ValueError:
                raise InvalidInput("invalid_amount", f"Enter the limit as an amount in {currency()}, e.g. 25 or "
                                   "12.50 (at most six decimals), or leave it empty for no limit.") from None
            budgets.budget_set(by=membership, key_id=key_id, monthly_limit_micros=limit)
        except ServiceError as exc:
            status, error = exc.status, exc.message
        else:
            whose = "the project" if key_id is None else "the key"
            messages.success(request, f"Monthly budget of {whose} {'set to ' + money_format(limit) if limit is not None else 'removed'}.")
            return redirect("usage-budgets", slug=slug)
    return render(request, "billing/budgets.html", _page(
        membership, overview=budgets.budget_overview(project=membership.project), currency=currency(), error=error),
        status=status)


# --- Deleted (archived) projects: their owners keep their statements ------------------------------

@login_required
@require_GET
def deleted_projects(request):
    projects = [(project, usage_months(project_id=project.pk))
                for project in project_archived_list(user=request.user)]
    return render(request, "billing/deleted_projects.html", {"projects": projects})


@login_required
@require_GET
def deleted_project_statement(request, pk, month):
    project = project_archived_get(user=request.user, pk=pk)
    try:
        first = usage_month_parse(month)
    except InvalidInput:
        raise Http404("No such month.") from None
    return render(request, "billing/deleted_statement.html", {
        "project": project, "statement": statement_get(project=project, month=first), "currency": currency(),
        "months": usage_months(project_id=project.pk)})
