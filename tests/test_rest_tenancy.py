"""Tenant isolation for every REST endpoint: another tenant's project, member or key is a 404 and
nothing changes, whether it is named directly or smuggled in under the caller's own project."""
import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, Budget, Membership, Project

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 makes each fixture user cost ~1s on a loaded machine; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# (url name, method, path template, body). Every /api/v1/ endpoint that names a project is here;
# test_every_project_endpoint_is_covered fails when a new one is added without joining this list.
ENDPOINTS = [
    ("api-project", "get", "/api/v1/projects/{slug}", None),
    ("api-project", "patch", "/api/v1/projects/{slug}", {"name": "Hijacked"}),
    ("api-project", "delete", "/api/v1/projects/{slug}", None),
    ("api-members", "get", "/api/v1/projects/{slug}/members", None),
    ("api-members", "post", "/api/v1/projects/{slug}/members", {"email": "outsider@example.com"}),
    ("api-member", "patch", "/api/v1/projects/{slug}/members/{member}", {"role": "owner"}),
    ("api-member", "delete", "/api/v1/projects/{slug}/members/{member}", None),
    ("api-keys", "get", "/api/v1/projects/{slug}/keys", None),
    ("api-keys", "post", "/api/v1/projects/{slug}/keys", {"name": "stolen", "environment": "development"}),
    ("api-key", "get", "/api/v1/projects/{slug}/keys/{key}", None),
    ("api-key-revoke", "post", "/api/v1/projects/{slug}/keys/{key}/revoke", None),
    ("api-key-rotate", "post", "/api/v1/projects/{slug}/keys/{key}/rotate", {"grace": "none"}),
    ("api-budgets", "get", "/api/v1/projects/{slug}/budgets", None),
    ("api-budgets", "put", "/api/v1/projects/{slug}/budgets", {"key_id": None, "monthly_limit_micros": 1}),
]


def _state():
    return (
        sorted(Project.objects.values_list("slug", "name")),
        sorted(Membership.objects.values_list("user_id", "project_id", "role")),
        sorted(ApiKey.objects.values_list("pk", "name", "revoked_at", "rotation_grace_ends_at")),
        sorted(Budget.objects.values_list("project_id", "key_id", "monthly_limit_micros")),
    )


def _call(client, method, path, body):
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


def _owner_member(project):
    return project.memberships.get(role="owner").pk


@pytest.mark.parametrize("name, method, template, body", ENDPOINTS, ids=[f"{e[1]} {e[0]}" for e in ENDPOINTS])
def test_outsider_gets_404_and_changes_nothing(name, method, template, body, project, other_project, outsider, dev_key):
    row, _raw = dev_key
    client = APIClient()
    client.force_login(outsider)
    before = _state()
    path = template.format(slug=project.slug, key=row.pk, member=_owner_member(project))
    response = _call(client, method, path, body)
    assert response.status_code == 404, (path, response.content)
    assert response.json()["error"]["code"] == "not_found"
    assert _state() == before


@pytest.mark.parametrize("name, method, template, body", [e for e in ENDPOINTS if "{key}" in e[2] or "{member}" in e[2]],
                         ids=[f"{e[1]} {e[0]}" for e in ENDPOINTS if "{key}" in e[2] or "{member}" in e[2]])
def test_foreign_objects_under_my_own_project_are_404(name, method, template, body, project, other_project, outsider, dev_key):
    """The outsider names its OWN project but the victim's key or membership id."""
    row, _raw = dev_key
    client = APIClient()
    client.force_login(outsider)
    before = _state()
    path = template.format(slug=other_project.slug, key=row.pk, member=_owner_member(project))
    response = _call(client, method, path, body)
    assert response.status_code == 404, (path, response.content)
    assert _state() == before


@pytest.mark.parametrize("name, method, template, body", ENDPOINTS, ids=[f"{e[1]} {e[0]}" for e in ENDPOINTS])
def test_another_projects_api_key_gets_404(name, method, template, body, project, other_key, dev_key):
    row, _raw = dev_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key[1]}")
    before = _state()
    path = template.format(slug=project.slug, key=row.pk, member=_owner_member(project))
    response = _call(client, method, path, body)
    assert response.status_code == 404, (path, response.content)
    assert _state() == before


@pytest.mark.parametrize("name, method, template, body", [e for e in ENDPOINTS if e[1] == "get"],
                         ids=[e[0] for e in ENDPOINTS if e[1] == "get"])
def test_member_can_read(name, method, template, body, project, member, dev_key):
    row, _raw = dev_key
    client = APIClient()
    client.force_login(member)
    path = template.format(slug=project.slug, key=row.pk, member=_owner_member(project))
    assert client.get(path).status_code == 200


def test_every_project_endpoint_is_covered():
    from accounts.api.urls import urlpatterns

    project_endpoints = {p.name for p in urlpatterns if "<slug:slug>" in str(p.pattern)}
    assert project_endpoints == {e[0] for e in ENDPOINTS}
