"""Billing: the price list, costs of ledger rows, monthly budgets, and usage reports (dashboard, CSV,
statements, REST). The ledger itself is accounts.models.UsageRecord, written by realtime.gateway.metering."""
