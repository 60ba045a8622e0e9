import json
import os

from django.core.management.base import BaseCommand, CommandError, CommandParser

from copytrading.services.demo import demo_seed, demo_server


class Command(BaseCommand):
    help = (
        "Creates demo customers, accounts on the paper venue(s) and in the back office, "
        "masters and followers (each follower subscribed to one master), and prints them as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--masters", type=int, default=3)
        parser.add_argument("--followers", type=int, default=30)
        parser.add_argument("--venue", default="http://127.0.0.1:8700")
        parser.add_argument("--second-venue", default=None)
        parser.add_argument("--api-key", default=os.environ.get("PAPER_VENUE_KEY", "paper-dev-key"))
        parser.add_argument("--password", default=None, help="one password for every demo user")

    def handle(self, *args: object, **options: object) -> None:
        masters, followers = int(options["masters"]), int(options["followers"])  # type: ignore[arg-type]
        if masters < 1 or followers < 0:
            raise CommandError("--masters must be at least 1 and --followers at least 0")
        from brokers.gateways.errors import GatewayError

        urls = [u for u in (options["venue"], options["second_venue"]) if u]
        try:
            servers = [
                demo_server(
                    url=str(url), name=f"Paper {chr(65 + i)}", api_key=str(options["api_key"])
                )
                for i, url in enumerate(urls)
            ]
            result = demo_seed(
                masters=masters,
                followers=followers,
                servers=servers,
                password=options["password"],  # type: ignore[arg-type]
            )
        except GatewayError as exc:
            raise CommandError(
                f"the paper venue did not answer ({exc}); start it with `manage.py runvenue`"
            ) from exc
        self.stdout.write(json.dumps(result.as_json()))
