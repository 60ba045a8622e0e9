"""Login hardening shared by the staff admin and the client API (issue 10).

- Brute-force lockout (django-axes): `LockoutBackend` refuses a locked-out login before the
  password is checked; `lockout_parameters` says what is locked; `lockout_response` is the
  answer while locked (the client API's RATE_LIMITED shape, or a staff page).
- Staff sessions end after STAFF_SESSION_IDLE_SECONDS without a request.
- `staff_otp_required` / `staff_is_verified`: the two-factor rule of the staff pages (the
  admin site in accounts/staff_site.py and the staff WebSockets in config/asgi.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from rest_framework.throttling import BaseThrottle

STAFF_PATH_PREFIX = "/admin/"


def client_ip(request: HttpRequest) -> str:
    """The connecting address, read as the client API's rate limits read it
    (REST_FRAMEWORK["NUM_PROXIES"] decides whether X-Forwarded-For is trusted)."""
    return BaseThrottle().get_ident(request) or ""


def _is_staff_surface(request_or_attempt: Any) -> bool:
    path = getattr(request_or_attempt, "path_info", "") or ""
    return path.startswith(STAFF_PATH_PREFIX)


def lockout_parameters(request_or_attempt: Any, credentials: dict | None = None) -> list:
    """Staff: the username is locked wherever the guesses come from (staff are few, and an
    unlock is one command away). Customers: the username from that address only, so that
    nobody can lock a customer out of the API from elsewhere; guessing from many addresses
    is slowed by the per-address login rate (api_login)."""
    if _is_staff_surface(request_or_attempt):
        return ["username"]
    return [["username", "ip_address"]]


def lockout_message() -> str:
    minutes = int(get_cool_off().total_seconds() // 60)
    return (
        f"Too many failed logins for this username: it is locked for {minutes} minutes. "
        "Try again later, or ask support to unlock it."
    )


def lockout_response(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The answer to a login while locked out (AXES_LOCKOUT_CALLABLE). The client API gets
    its error shape (429 RATE_LIMITED, as its other rate limits); staff get a page.

    (Axes calls this with `(request, original_response, credentials)`, or on its async path
    with `(request, credentials)`: neither is needed here.)"""
    retry_after = str(int(get_cool_off().total_seconds()))
    if _is_staff_surface(request):
        html = render_to_string("admin/staff/lockout.html", {"message": lockout_message()})
        response: HttpResponse = HttpResponse(html, status=429)
    else:
        response = JsonResponse({"error": "RATE_LIMITED", "message": lockout_message()}, status=429)
    response["Retry-After"] = retry_after
    return response


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' check, first in AUTHENTICATION_BACKENDS. A call without a request is no
    web login (a management command, the test client's `login`): nothing to count."""

    def authenticate(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


# -- staff sessions and two-factor -----------------------------------------------------


def staff_otp_required() -> bool:
    """Staff pages require a verified OTP device: always outside DEBUG (STAFF_OTP_REQUIRED
    defaults to `not DEBUG`; the demo runs with DEBUG on and needs none)."""
    return bool(getattr(settings, "STAFF_OTP_REQUIRED", True))


def staff_is_verified(user: Any) -> bool:
    """A staff user may use the staff pages: verified by an OTP device when required."""
    if not staff_otp_required():
        return True
    is_verified = getattr(user, "is_verified", None)
    return bool(is_verified and is_verified())


class StaffSessionIdleMiddleware:
    """Staff sessions slide: each staff request moves the end to STAFF_SESSION_IDLE_SECONDS
    from now, so an unattended admin tab is logged out after that long. Only /admin/ paths
    are looked at (the API's customers keep the expiry their login set)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if request.path_info.startswith(STAFF_PATH_PREFIX):
            user = request.user
            if user.is_authenticated and user.is_staff:
                request.session.set_expiry(settings.STAFF_SESSION_IDLE_SECONDS)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Awaitable[HttpResponse]:
        if request.path_info.startswith(STAFF_PATH_PREFIX):
            user = await request.auser()
            if user.is_authenticated and user.is_staff:
                await request.session.aset_expiry(settings.STAFF_SESSION_IDLE_SECONDS)
        return await self.get_response(request)


def _session_device_verifies(user: Any, session: Any) -> bool:
    """The session holds a confirmed OTP device of `user` (what django-otp's middleware
    checks over HTTP), read from a Channels scope's session."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.models import Device

    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    device = Device.from_persistent_id(persistent_id) if persistent_id else None
    return bool(device is not None and device.user_id == user.pk and device.confirmed)


class StaffOtpWebsocketMiddleware:
    """Channels middleware inside AuthMiddlewareStack: a staff user whose session is not
    verified by an OTP device (when required) is anonymous to the WebSocket consumers, as
    the admin treats them, so a password alone opens no staff live page."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        from channels.db import database_sync_to_async
        from django.contrib.auth.models import AnonymousUser

        user = scope.get("user")
        if (
            staff_otp_required()
            and user is not None
            and getattr(user, "is_authenticated", False)
            and user.is_staff
            and not await database_sync_to_async(_session_device_verifies)(
                user, scope.get("session")
            )
        ):
            scope = {**scope, "user": AnonymousUser()}
        return await self.inner(scope, receive, send)
