"""``manage.py runvenue``: the paper venue, started from Django's command line.

A thin wrapper: the venue itself needs neither the database nor Redis, and is
the same code that ``python -m brokers.paper`` runs.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.paper.server import add_venue_arguments, options_from, run


class Command(BaseCommand):
    help = "Run the paper venue (a simulated broker server) until SIGINT/SIGTERM."

    # The venue touches no model: skip the checks so it starts at once, even with
    # the database down.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        add_venue_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        venue_options = options_from(options)
        try:
            venue_options.config()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        run(venue_options)
