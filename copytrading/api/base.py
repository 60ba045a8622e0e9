"""The base view of every client API endpoint: who may call, how, how often, which errors."""

from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.authentication import (
    CustomerSessionAuthentication,
    CustomerTokenAuthentication,
    customer_of_user,
)
from accounts.api.permissions import IsCustomer
from accounts.models import Customer

from .errors import ApiError, api_exception_handler
from .parsers import JSONOnlyNegotiation, StrictJSONParser
from .throttles import CustomerRateThrottle, IpRateThrottle


class ClientApiView(APIView):
    """JSON only, customer-only, throttled per IP (before authentication, so unknown
    tokens are counted too) and per customer (after it), errors in the spec's shape."""

    authentication_classes = [CustomerTokenAuthentication, CustomerSessionAuthentication]
    permission_classes = [IsCustomer]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes = [CustomerRateThrottle]
    ip_throttle_classes: list[type] = [IpRateThrottle]
    # No OPTIONS: the OpenAPI schema describes the API; a method a path lacks is a 405.
    http_method_names = ["get", "post", "put", "delete", "head"]

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def perform_authentication(self, request: Request) -> None:
        # DRF checks throttles after authentication and permissions; the per-IP limit
        # runs first so that guessing tokens costs requests like anything else.
        for throttle_class in self.ip_throttle_classes:
            throttle = throttle_class()
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())
        super().perform_authentication(request)

    def customer(self, request: Request) -> Customer:
        """The customer this request acts for (the permission has made sure there is one)."""
        customer = customer_of_user(request.user)
        assert customer is not None
        return customer

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON object of the body; a body that is another JSON value is refused."""
        data = request.data
        if not isinstance(data, dict):
            message = "The body must be a JSON object."
            raise ApiError("VALIDATION_ERROR", message, fields={"body": [message]})
        return data


class NotFoundApi(ClientApiView):
    """Unknown paths under the API prefixes: the spec's NOT_FOUND, not Django's HTML page."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    throttle_classes: list[type] = []
    schema = None  # not an operation of the API
    http_method_names = ["get", "post", "put", "patch", "delete", "head"]

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise ApiError("NOT_FOUND", "No such endpoint.")

    get = post = put = patch = delete = _not_found
