from django.core.management.base import BaseCommand

from config.startup import require_services


class Command(BaseCommand):
    help = "Checks that PostgreSQL and Redis answer; one line per service that does not."

    def handle(self, *args: object, **options: object) -> None:
        require_services()
        self.stdout.write("PostgreSQL and Redis answer.")
