"""The published OpenAPI schema lists the spec's endpoints; the docs are for staff only
and load no asset from the internet."""

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.test import Client

from tests.factories import make_customer, make_staff

pytestmark = pytest.mark.django_db

SPEC_OPERATIONS = {
    ("get", "/copytrade/masters"),
    ("get", "/copytrade/my"),
    ("post", "/copytrade/master"),
    ("put", "/copytrade/master/{id}"),
    ("delete", "/copytrade/master/{id}"),
    ("post", "/copytrade/follower"),
    ("put", "/copytrade/follower/{id}"),
    ("delete", "/copytrade/follower/{id}"),
    ("post", "/copytrade/subscription"),
    ("put", "/copytrade/subscription/{id}"),
    ("delete", "/copytrade/subscription/{id}"),
    ("get", "/copytrade/trade-links"),
    ("get", "/copytrade/rewards"),
    ("post", "/auth/login"),
    ("post", "/auth/logout"),
}


@pytest.fixture
def schema():
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_schema_is_public_openapi_3_with_exactly_the_spec_operations(schema):
    assert schema["openapi"].startswith("3.")
    operations = {
        (method, path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert operations == SPEC_OPERATIONS


def test_schema_as_json_too():
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Copy-trading client API"


def test_every_operation_documents_its_errors_in_the_error_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"]
    assert "RATE_LIMITED" in schema["components"]["schemas"]["ErrorEnum"]["enum"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "429" in responses, (method, path)
            if path != "/auth/login":
                assert "401" in responses, (method, path)
                assert operation["security"], (method, path)
            for status, response in responses.items():
                if status.startswith("4"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Error"), (method, path, status)


def test_request_bodies_refuse_unknown_fields_and_flags_are_integers(schema):
    components = schema["components"]["schemas"]
    sub = components["SubscriptionCreateRequest"]
    assert set(sub["required"]) == {"master_login", "follower_login"}
    assert components["ZeroOrOneEnum"]["enum"] == [0, 1]
    assert "2" not in str(
        components[sub["properties"]["status"]["allOf"][0]["$ref"].split("/")[-1]]
    )
    assert sub["properties"]["risk_multiplier"]["oneOf"][1]["type"] == "string"
    answer = components["Subscription"]["properties"]
    assert answer["risk_multiplier"]["type"] == "string"


def test_docs_are_for_staff_only(client, staff_password, settings):
    assert client.get("/api/docs/").status_code == 302
    customer = make_customer(username="kim")
    client.login(username=customer.user.username, password="correct-horse-battery")
    assert client.get("/api/docs/").status_code == 302
    staff = make_staff()
    client.login(username=staff.username, password=staff_password)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/schema/" in html
    # Assets come from the sidecar app under STATIC_URL, never from a CDN.
    scripts = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert scripts
    assert all(not s.startswith(("http:", "https:", "//")) for s in scripts), scripts
    bundle = next(s for s in scripts if s.endswith("swagger-ui-bundle.js"))
    assert finders.find(bundle.removeprefix(settings.STATIC_URL))  # shipped by the sidecar
