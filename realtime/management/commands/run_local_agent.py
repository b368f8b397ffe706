"""Serve only the local agent: ``python manage.py run_local_agent --port 8765 [--host 127.0.0.1]``."""
from daphne.cli import CommandLineInterface
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    # The agent needs no URLconf, admin or models: skip the project-wide system checks.
    requires_system_checks: list = []
    help = "Serve the built-in local realtime agent on its own port (ws://HOST:PORT/agents/local/v1/realtime)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, host: str, port: int, **options):
        self.stdout.write(f"Local agent at ws://{host}:{port}/agents/local/v1/realtime")
        self.stdout.flush()
        CommandLineInterface().run(["-b", host, "-p", str(port), "realtime.local_agent.asgi:application"])
