"""Rotate the JWT signing key without downtime: a new key signs from now, the old ones keep verifying
(and stay in the JWKS) until every token they signed has expired."""
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from realtime.agents.services import TOKEN_MAX_TTL_SECONDS, signing_key_rotate


class Command(BaseCommand):
    help = "Make a new JWT signing key; old keys keep verifying for --verify-seconds (default: the longest token TTL)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--verify-seconds",
            type=int,
            default=TOKEN_MAX_TTL_SECONDS,
            help=f"How long the old keys keep verifying (default {TOKEN_MAX_TTL_SECONDS}; 0 retires them at "
            "once, breaking tokens in flight: only for a compromised key).",
        )

    def handle(self, *args, verify_seconds, **options):
        if verify_seconds < 0:
            raise CommandError("--verify-seconds must be 0 or more")
        new_key, retired = signing_key_rotate(verify_for=timedelta(seconds=verify_seconds))
        self.stdout.write(f"New signing key {new_key.kid} signs from now.")
        for key in retired:
            self.stdout.write(f"Retired {key.kid}; it verifies until {key.verify_until.isoformat()}.")
