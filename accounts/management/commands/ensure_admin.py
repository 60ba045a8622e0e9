import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Creates (or resets) the demo superuser and prints its login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default=None, help="default: a new random one")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args: object, **options: str) -> None:
        password = options["password"] or secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username=options["username"], defaults={"email": "admin@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(
            f"Admin login: {options['url']}  username: {user.username}  password: {password}"
        )
        if getattr(settings, "STAFF_OTP_REQUIRED", False):
            self.stdout.write(
                "The admin asks for an authenticator code (DEBUG is off): enrol one with "
                f"`manage.py staff_totp {user.username}`."
            )
