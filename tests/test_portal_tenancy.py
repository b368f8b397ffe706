"""Tenant isolation for every portal page: another tenant's project, key or member is a 404 and
nothing changes; signed-out visitors are sent to the login page."""
import pytest
from django.test import Client

from accounts.models import ApiKey, Budget, Membership, Project

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 makes each fixture user cost ~1s on a loaded machine; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# (url name, method, path template, form data). Every project page of accounts.urls is here;
# test_every_project_page_is_covered fails when one is added without joining this list.
PAGES = [
    ("project-detail", "get", "/projects/{slug}/", None),
    ("key-new", "get", "/projects/{slug}/keys/new/", None),
    ("key-new", "post", "/projects/{slug}/keys/new/", {"name": "stolen", "environment": "development"}),
    ("key-created", "get", "/projects/{slug}/keys/{key}/created/", None),
    ("key-revoke", "get", "/projects/{slug}/keys/{key}/revoke/", None),
    ("key-revoke", "post", "/projects/{slug}/keys/{key}/revoke/", {}),
    ("key-rotate", "get", "/projects/{slug}/keys/{key}/rotate/", None),
    ("key-rotate", "post", "/projects/{slug}/keys/{key}/rotate/", {"grace": "none"}),
    ("member-list", "get", "/projects/{slug}/members/", None),
    ("member-list", "post", "/projects/{slug}/members/", {"email": "outsider@example.com", "role": "owner"}),
    ("member-role", "post", "/projects/{slug}/members/{member}/role/", {"role": "member"}),
    ("member-remove", "get", "/projects/{slug}/members/{member}/remove/", None),
    ("member-remove", "post", "/projects/{slug}/members/{member}/remove/", {}),
    ("project-settings", "get", "/projects/{slug}/settings/", None),
    ("project-settings", "post", "/projects/{slug}/settings/", {"name": "Hijacked"}),
    ("project-delete", "post", "/projects/{slug}/delete/", {"confirm": "{slug}"}),
    ("usage-dashboard", "get", "/projects/{slug}/usage/", None),
    ("usage-csv", "get", "/projects/{slug}/usage/export.csv", None),
    ("usage-key", "get", "/projects/{slug}/usage/keys/{key_id}/", None),
    ("usage-statement", "get", "/projects/{slug}/usage/statements/2026-01/", None),
    ("usage-budgets", "get", "/projects/{slug}/usage/budgets/", None),
    ("usage-budgets", "post", "/projects/{slug}/usage/budgets/", {"key_id": "", "limit": "1"}),
]
IDS = [f"{p[1]} {p[0]}" for p in PAGES]


def _state():
    return (
        sorted(Project.objects.values_list("slug", "name")),
        sorted(Membership.objects.values_list("user_id", "project_id", "role")),
        sorted(ApiKey.objects.values_list("pk", "name", "revoked_at", "rotation_grace_ends_at")),
        sorted(Budget.objects.values_list("project_id", "key_id", "monthly_limit_micros")),
    )


def _request(client, method, template, data, *, slug, key, member):
    key_id = ApiKey.objects.get(pk=key).key_id
    path = template.format(slug=slug, key=key, member=member, key_id=key_id)
    if method == "get":
        return client.get(path)
    return client.post(path, {k: v.format(slug=slug) for k, v in data.items()})


@pytest.mark.parametrize("name, method, template, data", PAGES, ids=IDS)
def test_outsider_gets_404_and_changes_nothing(name, method, template, data, project, other_project, outsider, dev_key):
    client = Client()
    client.force_login(outsider)
    before = _state()
    owner_membership = project.memberships.get(role="owner").pk
    response = _request(client, method, template, data, slug=project.slug, key=dev_key[0].pk, member=owner_membership)
    assert response.status_code == 404
    assert _state() == before


@pytest.mark.parametrize("name, method, template, data", [p for p in PAGES if "{key" in p[2] or "{member}" in p[2]],
                         ids=[i for i, p in zip(IDS, PAGES) if "{key" in p[2] or "{member}" in p[2]])
def test_foreign_objects_under_my_own_project_are_404(name, method, template, data, project, other_project, outsider, dev_key):
    client = Client()
    client.force_login(outsider)
    before = _state()
    owner_membership = project.memberships.get(role="owner").pk
    response = _request(client, method, template, data, slug=other_project.slug, key=dev_key[0].pk, member=owner_membership)
    assert response.status_code == 404
    assert _state() == before


@pytest.mark.parametrize("name, method, template, data", PAGES, ids=IDS)
def test_signed_out_visitor_is_sent_to_login(name, method, template, data, project, dev_key):
    before = _state()
    owner_membership = project.memberships.get(role="owner").pk
    response = _request(Client(), method, template, data, slug=project.slug, key=dev_key[0].pk, member=owner_membership)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert _state() == before


@pytest.mark.parametrize("name, method, template, data", [p for p in PAGES if p[1] == "post"],
                         ids=[i for i, p in zip(IDS, PAGES) if p[1] == "post"])
def test_member_cannot_change_anything(name, method, template, data, project, member, outsider, dev_key):
    client = Client()
    client.force_login(member)
    before = _state()
    owner_membership = project.memberships.get(role="owner").pk
    response = _request(client, method, template, data, slug=project.slug, key=dev_key[0].pk, member=owner_membership)
    assert response.status_code in (302, 403)
    if response.status_code == 302:  # role/remove forms go back to the members page with the reason
        follow = client.get(response["Location"])
        assert "does not allow" in follow.content.decode()
    assert _state() == before


@pytest.mark.parametrize("path", ["/projects/{slug}/", "/projects/{slug}/members/", "/projects/{slug}/settings/",
                                  "/projects/{slug}/usage/", "/projects/{slug}/usage/budgets/"])
def test_member_can_view(path, project, member, dev_key):
    client = Client()
    client.force_login(member)
    response = client.get(path.format(slug=project.slug))
    assert response.status_code == 200
    assert project.name in response.content.decode()


def test_every_project_page_is_covered():
    from accounts.urls import urlpatterns

    pages = {p.name for p in urlpatterns if "<slug:slug>" in str(p.pattern)}
    assert pages == {p[0] for p in PAGES}
