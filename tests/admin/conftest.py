import pytest

from tests.admin.support import copied_trade
from tests.factories import make_staff


@pytest.fixture
def trade(db):
    return copied_trade()


@pytest.fixture
def superuser(db):
    return make_staff(is_superuser=True)


@pytest.fixture
def login(client, staff_password):
    """Signs the test client in as a staff user of `role` (or a superuser), returns it."""

    def sign_in(role: str | None = None, **kwargs):
        user = make_staff(group=role, **kwargs) if role else make_staff(is_superuser=True)
        assert client.login(username=user.username, password=staff_password)
        return user

    return sign_in
