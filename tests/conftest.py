import pytest


@pytest.fixture
def staff_password() -> str:
    return "staff-password-123"
