"""Enrols a staff member's authenticator app (TOTP) for the two-factor admin login."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = (
        "Enrols an authenticator app for a staff user: prints the otpauth:// URL and its QR "
        "code to scan. --reset replaces the user's devices (a lost phone)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="the device's label")
        parser.add_argument(
            "--reset", action="store_true", help="delete the user's other TOTP devices first"
        )
        parser.add_argument("--no-qr", action="store_true", help="print the URL only")

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["username"])
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}; create the staff user first.")
        if not user.is_staff:
            raise CommandError(
                f"{username!r} is not staff: customers log in to the API, not the admin."
            )
        with transaction.atomic():
            devices = TOTPDevice.objects.filter(user=user)
            if devices.exists() and not options["reset"]:
                raise CommandError(
                    f"{username!r} already has an authenticator; pass --reset to replace it "
                    "(the old one stops working)."
                )
            devices.delete()
            device = TOTPDevice.objects.create(user=user, name=str(options["name"]), confirmed=True)
        url = device.config_url
        self.stdout.write(f"Authenticator for {username}: scan the QR code or open this URL")
        self.stdout.write(url)
        if not options["no_qr"]:
            import io

            import segno

            drawing = io.StringIO()
            segno.make(url, error="m").terminal(out=drawing, compact=True)
            # Written whole: the command's stdout would add a newline after every line.
            self.stdout.write(drawing.getvalue(), ending="")
