"""Sign-up, email verification, login, logout, password change and reset (django-allauth), and login
rate limiting."""
import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from tests.conftest import make_user

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 makes each fixture user cost ~1s on a loaded machine; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _clean_rate_limits():
    # allauth keeps its rate-limit counters in the cache; each test starts from zero.
    cache.clear()
    yield
    cache.clear()


def _link(message, path_fragment: str) -> str:
    match = re.search(rf"https?://[^/\s]+(/accounts/{path_fragment}[^\s]+)", message.body)
    assert match, message.body
    return match.group(1)


def test_sign_up_verify_email_then_reach_projects():
    client = Client()
    response = client.post("/accounts/signup/", {"email": "New@Example.com", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    user = User.objects.get(email__iexact="new@example.com")
    # Mandatory verification: not signed in yet.
    assert client.get("/projects/").status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new@example.com"]
    confirm_path = _link(mail.outbox[0], "confirm-email/")
    assert client.get(confirm_path).status_code == 200
    response = client.post(confirm_path)
    assert response.status_code == 302
    assert client.get("/projects/").status_code == 200
    assert user.emailaddress_set.get().verified


def test_unverified_user_cannot_log_in():
    client = Client()
    client.post("/accounts/signup/", {"email": "late@example.com", "password1": PASSWORD, "password2": PASSWORD})
    other = Client()
    response = other.post("/accounts/login/", {"login": "late@example.com", "password": PASSWORD})
    assert response.status_code == 302 and "confirm-email" in response["Location"]
    assert other.get("/projects/").status_code == 302


@pytest.mark.parametrize(
    "data, message",
    [
        ({"email": "not-an-email", "password1": PASSWORD, "password2": PASSWORD}, "Enter a valid email address."),
        ({"email": "a@example.com", "password1": PASSWORD, "password2": PASSWORD + "x"}, "You must type the same password each time."),
        ({"email": "a@example.com", "password1": "12345678", "password2": "12345678"}, "This password is too common."),
    ],
)
def test_bad_sign_up_shows_an_error_and_creates_nothing(data, message):
    response = Client().post("/accounts/signup/", data)
    assert response.status_code == 200 and message in response.content.decode()
    assert not User.objects.exists() and not mail.outbox


def test_duplicate_email_sign_up_creates_nothing(owner):
    Client().post("/accounts/signup/", {"email": "OWNER@example.com", "password1": PASSWORD, "password2": PASSWORD})
    assert User.objects.filter(email__iexact="owner@example.com").count() == 1


def _verified_user(email="verified@example.com"):
    from allauth.account.models import EmailAddress

    user = make_user(email, PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def test_login_and_logout():
    _verified_user()
    client = Client()
    response = client.post("/accounts/login/", {"login": "verified@example.com", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/projects/"
    assert client.get("/projects/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/projects/").status_code == 302


def test_failed_logins_are_rate_limited():
    _verified_user()
    client = Client()
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": "verified@example.com", "password": "wrong password"})
        assert response.status_code == 200 and "not correct" in response.content.decode()
    # The limit now refuses even the right password: guessing stops paying off.
    response = client.post("/accounts/login/", {"login": "verified@example.com", "password": PASSWORD})
    assert response.status_code in (200, 429)
    assert "Too many failed login attempts" in response.content.decode()
    assert client.get("/projects/").status_code == 302


def test_rate_limit_is_per_account_across_addresses():
    _verified_user()
    for n in range(5):
        Client(REMOTE_ADDR=f"10.0.0.{n + 1}").post("/accounts/login/", {"login": "verified@example.com", "password": "nope"})
    response = Client(REMOTE_ADDR="10.0.0.99").post("/accounts/login/", {"login": "verified@example.com", "password": PASSWORD})
    assert "Too many failed login attempts" in response.content.decode()


def test_password_reset_by_email():
    _verified_user()
    client = Client()
    assert client.post("/accounts/password/reset/", {"email": "verified@example.com"}).status_code == 302
    assert len(mail.outbox) == 1
    reset_path = _link(mail.outbox[0], "password/reset/key/")
    response = client.get(reset_path)
    if response.status_code == 302:  # allauth moves the token out of the URL before showing the form
        reset_path = response["Location"]
    new = "a brand new passphrase 42"
    response = client.post(reset_path, {"password1": new, "password2": new})
    assert response.status_code == 302
    assert Client().login(email="verified@example.com", password=new)


def test_password_change():
    user = _verified_user()
    client = Client()
    client.force_login(user)
    new = "another long passphrase 7"
    response = client.post("/accounts/password/change/", {"oldpassword": PASSWORD, "password1": new, "password2": new})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)
