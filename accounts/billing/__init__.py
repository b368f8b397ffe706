"""Billing: the price list, the usage ledger and its one writer (ledger.py, fed by the per-process usage
writer and its spool: writer.py, spool.py), costs of ledger rows, monthly budgets, and usage reports
(dashboard, CSV, statements, REST)."""
