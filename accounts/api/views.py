"""POST /auth/login and POST /auth/logout of spec/client-api.md.

A login gives both a bearer token and a session cookie, bound to each other: logging
out with either ends both. The token expires after API_TOKEN_LIFETIME_SECONDS and the
session with it.
"""

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status as http
from rest_framework.request import Request
from rest_framework.response import Response

from copytrading.api.base import ClientApiView
from copytrading.api.errors import ApiError
from copytrading.api.schema import error_responses
from copytrading.api.throttles import IpRateThrottle, LoginRateThrottle

from ..models import CustomerApiToken
from .authentication import SESSION_TOKEN_KEY, customer_of_user
from .serializers import LoginAnswerSerializer, LoginSerializer
from .tokens import customer_token_issue, customer_token_revoke, token_lifetime


class LoginApi(ClientApiView):
    """Checks a customer's username and password; staff users cannot log in here."""

    # No authentication: nothing to be CSRF-checked against yet (see README: a login
    # form on another site could only log a browser into the attacker's own account).
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    throttle_classes: list[type] = []
    ip_throttle_classes = [IpRateThrottle, LoginRateThrottle]

    @extend_schema(
        operation_id="auth_login",
        summary="Log a customer in: a bearer token and a session cookie",
        request=LoginSerializer,
        auth=[],
        examples=[
            OpenApiExample(
                "Login", value={"username": "alice", "password": "secret"}, request_only=True
            )
        ],
        responses={
            200: LoginAnswerSerializer,
            **error_responses("VALIDATION_ERROR", "INVALID_CREDENTIALS", authenticated=False),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = LoginSerializer(data=self.body(request))
        serializer.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        customer = customer_of_user(user)
        if customer is None:
            # The same answer for an unknown user, a wrong password, a staff user and a
            # suspended customer: nothing here tells which logins exist.
            raise ApiError("INVALID_CREDENTIALS", "Wrong username or password.")
        login(request._request, user)
        session = request._request.session
        session.set_expiry(int(token_lifetime().total_seconds()))
        raw, token = customer_token_issue(customer=customer, session_key=session.session_key or "")
        session[SESSION_TOKEN_KEY] = token.pk
        return Response({"token": raw, "customer_id": customer.pk})


class LogoutApi(ClientApiView):
    """Ends the token and the session of one login, whichever of the two the call used."""

    @extend_schema(
        operation_id="auth_logout",
        summary="End the session and the token",
        request=None,
        responses={204: None, **error_responses()},
    )
    def post(self, request: Request) -> Response:
        token = request.auth if isinstance(request.auth, CustomerApiToken) else None
        if token is None:
            token_id = request._request.session.get(SESSION_TOKEN_KEY)
            token = CustomerApiToken.objects.filter(pk=token_id).first() if token_id else None
        if token is not None:
            customer_token_revoke(token=token)
            if token.session_key:
                _session_store(token.session_key).delete()
        logout(request._request)
        return Response(status=http.HTTP_204_NO_CONTENT)


def _session_store(session_key: str) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)
