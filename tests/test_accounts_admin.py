"""Django admin for operators: every accounts model is listed; an API key shows its digest read-only
and never a secret, and keys cannot be added there (they would have no secret to hand out)."""
import pytest
from django.test import Client

from accounts.models import User

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def operator(db):
    user = User.objects.create_superuser(email="ops@example.com", password="operator passphrase 1")
    client = Client()
    client.force_login(user)
    return client


def test_admin_lists_every_accounts_model(operator, project, dev_key):
    index = operator.get("/admin/").content.decode()
    for model in ("users", "projects", "memberships", "environments", "api keys", "agents", "deployments", "usage records",
                  "prices", "budgets"):
        assert model in index.lower(), model
    for path in ("user", "project", "membership", "environment", "apikey", "agent", "deployment", "usagerecord",
                 "price", "budget"):
        assert operator.get(f"/admin/accounts/{path}/").status_code == 200, path


def test_api_key_page_shows_digest_read_only_and_no_secret(operator, dev_key):
    row, raw = dev_key
    page = operator.get(f"/admin/accounts/apikey/{row.pk}/change/").content.decode()
    assert row.digest in page and raw not in page
    assert 'name="digest"' not in page  # displayed, not editable
    assert operator.get("/admin/accounts/apikey/add/").status_code == 403


def test_non_staff_cannot_use_admin(owner):
    client = Client()
    client.force_login(owner)
    assert client.get("/admin/accounts/apikey/").status_code == 302


def test_revoking_from_the_admin_goes_through_the_revoke_service(operator, dev_key):
    from accounts.keys import KeyRejected, api_key_verify, key_cache

    row, raw = dev_key
    api_key_verify(raw=raw)  # cached as usable in this process
    page = operator.get(f"/admin/accounts/apikey/{row.pk}/change/").content.decode()
    assert 'name="revoked_at' not in page  # no date to edit by hand (a future one used to keep the key working)
    response = operator.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [str(row.pk)]})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    with pytest.raises(KeyRejected) as rejected:  # the service cleared the cache: refused at once
        api_key_verify(raw=raw)
    assert rejected.value.reason == "revoked_key"
    key_cache.clear()
