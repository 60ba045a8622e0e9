"""The staff admin site: unfold's site with a two-factor login (django-otp, TOTP).

Guards: outside DEBUG (STAFF_OTP_REQUIRED) every admin page, and every staff page built on
`admin.site.admin_view`, needs a session verified by one of the user's confirmed OTP
devices; a staff user with a password alone is sent back to the login. A wrong code counts
as a failed login for the brute-force lockout, like a wrong password.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_otp import devices_for_user, match_token
from unfold.forms import AuthenticationForm
from unfold.sites import UnfoldAdminSite
from unfold.widgets import BASE_INPUT_CLASSES

from .security import staff_is_verified, staff_otp_required

ENROL_HINT = "ask an administrator to run `manage.py staff_totp {username}`"


class StaffLoginForm(AuthenticationForm):
    """Username, password, and the 6-digit code of the user's authenticator app (required
    when STAFF_OTP_REQUIRED; optional, but checked if given, in the DEBUG demo)."""

    otp_token = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=16,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "class": " ".join(BASE_INPUT_CLASSES),
            }
        ),
        help_text="The 6-digit code your authenticator app shows for this site.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()  # username and password (and the lockout) first
        user = self.get_user()
        token = (cleaned.get("otp_token") or "").strip()
        if user is None or (not token and not staff_otp_required()):
            return cleaned
        if not list(devices_for_user(user)):
            raise ValidationError(
                "This account has no authenticator enrolled: "
                + ENROL_HINT.format(username=user.get_username()),
                code="otp_not_enrolled",
            )
        if not token:
            raise ValidationError("Enter the code of your authenticator app.", code="otp_missing")
        device = match_token(user, token)
        if device is None:
            # Counted by the lockout as a failed login: a password alone must not give
            # unlimited guesses at the code.
            user_login_failed.send(
                sender=type(self),
                credentials={"username": user.get_username()},
                request=self.request,
            )
            raise ValidationError(
                "Wrong or expired authenticator code; enter the current one.", code="otp_invalid"
            )
        # django-otp's user_logged_in handler stores this device in the session.
        user.otp_device = device  # type: ignore[attr-defined]
        return cleaned


class StaffAdminSite(UnfoldAdminSite):
    """unfold's admin site, two-factor: see the module docstring."""

    login_form = StaffLoginForm
    login_template = "admin/staff/login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and staff_is_verified(request.user)
