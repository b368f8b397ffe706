"""The REST API under /api/v1/: projects, members, keys, /me; JSON errors with codes; bad input
changes nothing."""
import base64
import json

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Project, Role
from tests.conftest import make_user

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 makes each fixture user cost ~1s on a loaded machine; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api():
    def client_for(user=None, *, key=None, csrf=False):
        client = APIClient(enforce_csrf_checks=csrf)
        if user is not None:
            client.force_login(user)
        if key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return client_for


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


def _snapshot():
    """Everything a bad request must leave untouched."""
    return (
        sorted(Project.objects.values_list("slug", "name")),
        sorted(Membership.objects.values_list("user__email", "project__slug", "role")),
        sorted(ApiKey.objects.values_list("name", "revoked_at", "rotation_grace_ends_at")),
    )


# --- Projects ----------------------------------------------------------------------------------------

def test_project_create_list_rename_delete(api, owner):
    client = api(owner)
    created = client.post("/api/v1/projects", {"name": "Voice Bot"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["slug"] == "voice-bot" and body["role"] == "owner"
    assert body["environments"] == ["development", "staging", "production"]

    listed = client.get("/api/v1/projects").json()
    assert [p["slug"] for p in listed] == ["voice-bot"]

    renamed = client.patch("/api/v1/projects/voice-bot", {"name": "Voice Bot 2"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Voice Bot 2"
    assert Project.objects.get(slug="voice-bot").name == "Voice Bot 2"

    assert client.delete("/api/v1/projects/voice-bot").status_code == 204
    assert not Project.objects.filter(slug="voice-bot").exists()
    assert_error(client.get("/api/v1/projects/voice-bot"), 404, "not_found")


def test_project_list_shows_only_my_projects(api, project, other_project, member, outsider):
    assert [p["slug"] for p in api(member).get("/api/v1/projects").json()] == [project.slug]
    assert [p["slug"] for p in api(outsider).get("/api/v1/projects").json()] == [other_project.slug]


def test_explicit_slug_and_duplicate_slug(api, owner, other_project):
    client = api(owner)
    assert client.post("/api/v1/projects", {"name": "X", "slug": "my-slug"}, format="json").json()["slug"] == "my-slug"
    before = _snapshot()
    assert_error(client.post("/api/v1/projects", {"name": "Y", "slug": "my-slug"}, format="json"), 409, "duplicate_slug")
    assert_error(client.post("/api/v1/projects", {"name": "Y", "slug": other_project.slug}, format="json"), 409, "duplicate_slug")
    assert _snapshot() == before


def test_same_name_gets_a_fresh_slug(api, owner, outsider):
    api(outsider).post("/api/v1/projects", {"name": "Same"}, format="json")
    assert api(owner).post("/api/v1/projects", {"name": "Same"}, format="json").json()["slug"] == "same-2"


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"name": ""}, 400, "empty_name"),
        ({"name": "   "}, 400, "empty_name"),
        ({"name": "x" * 101}, 400, "name_too_long"),
        ({"name": "ok", "slug": "Not A Slug"}, 400, "invalid_slug"),
        ({"name": "ok", "slug": "x" * 61}, 400, "invalid_slug"),
        ({"name": "ok", "slug": "new"}, 400, "invalid_slug"),
        ({}, 400, "invalid"),
    ],
)
def test_bad_project_input_changes_nothing(api, owner, payload, status, code):
    before = _snapshot()
    assert_error(api(owner).post("/api/v1/projects", payload, format="json"), status, code)
    assert _snapshot() == before


def test_bad_rename_changes_nothing(api, project, owner):
    before = _snapshot()
    assert_error(api(owner).patch(f"/api/v1/projects/{project.slug}", {"name": ""}, format="json"), 400, "empty_name")
    assert_error(api(owner).patch(f"/api/v1/projects/{project.slug}", {"name": "y" * 500}, format="json"), 400, "name_too_long")
    assert _snapshot() == before


def test_only_the_owner_deletes_and_members_cannot_rename(api, project, member):
    admin = make_user("admin@example.com")
    Membership.objects.create(user=admin, project=project, role=Role.ADMIN)
    assert_error(api(admin).delete(f"/api/v1/projects/{project.slug}"), 403, "forbidden")
    assert_error(api(member).patch(f"/api/v1/projects/{project.slug}", {"name": "Mine"}, format="json"), 403, "forbidden")
    assert api(admin).patch(f"/api/v1/projects/{project.slug}", {"name": "Renamed by admin"}, format="json").status_code == 200
    assert Project.objects.filter(pk=project.pk).exists()


# --- Members -----------------------------------------------------------------------------------------

def test_invite_change_role_and_remove(api, project, owner, outsider):
    client = api(owner)
    invited = client.post(f"/api/v1/projects/{project.slug}/members", {"email": "Outsider@Example.com"}, format="json")
    assert invited.status_code == 201 and invited.json()["role"] == "member"
    member_id = invited.json()["id"]
    emails = [m["email"] for m in client.get(f"/api/v1/projects/{project.slug}/members").json()]
    assert "outsider@example.com" in emails

    changed = client.patch(f"/api/v1/projects/{project.slug}/members/{member_id}", {"role": "admin"}, format="json")
    assert changed.json()["role"] == "admin"
    assert Membership.objects.get(pk=member_id).role == Role.ADMIN

    assert client.delete(f"/api/v1/projects/{project.slug}/members/{member_id}").status_code == 204
    assert not Membership.objects.filter(pk=member_id).exists()
    assert_error(api(outsider).get(f"/api/v1/projects/{project.slug}"), 404, "not_found")


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"email": "not-an-email"}, 400, "invalid_email"),
        ({"email": ""}, 400, "invalid_email"),
        ({"email": "a" * 300 + "@example.com"}, 400, "invalid_email"),
        ({"email": "nobody@example.com"}, 400, "unknown_user"),
        ({"email": "member@example.com"}, 409, "already_member"),
        ({"email": "outsider@example.com", "role": "king"}, 400, "invalid_role"),
    ],
)
def test_bad_invites_change_nothing(api, project, owner, outsider, payload, status, code):
    before = _snapshot()
    assert_error(api(owner).post(f"/api/v1/projects/{project.slug}/members", payload, format="json"), status, code)
    assert _snapshot() == before


def test_member_can_view_members_but_not_manage(api, project, member, outsider):
    client = api(member)
    assert client.get(f"/api/v1/projects/{project.slug}/members").status_code == 200
    before = _snapshot()
    assert_error(client.post(f"/api/v1/projects/{project.slug}/members", {"email": outsider.email}, format="json"), 403, "forbidden")
    owner_membership = project.memberships.get(role=Role.OWNER)
    assert_error(client.patch(f"/api/v1/projects/{project.slug}/members/{owner_membership.pk}", {"role": "member"}, format="json"), 403, "forbidden")
    assert_error(client.delete(f"/api/v1/projects/{project.slug}/members/{owner_membership.pk}"), 403, "forbidden")
    assert _snapshot() == before


def test_member_can_leave_but_last_owner_cannot(api, project, owner, member):
    mine = project.memberships.get(user=member)
    assert api(member).delete(f"/api/v1/projects/{project.slug}/members/{mine.pk}").status_code == 204
    assert_error(api(member).get(f"/api/v1/projects/{project.slug}"), 404, "not_found")
    owner_membership = project.memberships.get(user=owner)
    assert_error(api(owner).delete(f"/api/v1/projects/{project.slug}/members/{owner_membership.pk}"), 409, "last_owner")
    assert_error(api(owner).patch(f"/api/v1/projects/{project.slug}/members/{owner_membership.pk}", {"role": "admin"}, format="json"), 409, "last_owner")
    assert project.memberships.get(user=owner).role == Role.OWNER


# --- Keys --------------------------------------------------------------------------------------------

def test_key_create_returns_the_secret_once(api, project, owner):
    client = api(owner)
    created = client.post(f"/api/v1/projects/{project.slug}/keys", {"name": "server", "environment": "staging"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("sb_stg_") and body["environment"] == "staging" and body["status"] == "active"
    assert body["display"] == f"{body['prefix']}…{body['last4']}" and body["secret"].endswith(body["last4"])
    assert created["Cache-Control"] == "no-store"
    listed = client.get(f"/api/v1/projects/{project.slug}/keys").json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert "secret" not in listed[0] and body["secret"] not in json.dumps(listed)
    detail = client.get(f"/api/v1/projects/{project.slug}/keys/{body['id']}").json()
    assert "secret" not in detail
    me = api(key=body["secret"]).get("/api/v1/me").json()
    assert me == {"kind": "api_key", "project": {"slug": project.slug, "name": project.name},
                  "environment": "staging", "key_id": body["key_id"], "key_name": "server"}


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"name": "k", "environment": "qa"}, 400, "unknown_environment"),
        ({"name": "k", "environment": ""}, 400, "unknown_environment"),
        ({"name": "", "environment": "development"}, 400, "empty_name"),
        ({"name": "k" * 101, "environment": "development"}, 400, "name_too_long"),
        ({"name": "k", "environment": "development", "expires_at": "2001-01-01T00:00:00Z"}, 400, "invalid_expiry"),
        ({"name": "k", "environment": "development", "expires_at": "tomorrow"}, 400, "invalid"),
        ({"environment": "development"}, 400, "invalid"),
    ],
)
def test_bad_key_input_changes_nothing(api, project, owner, payload, status, code):
    before = _snapshot()
    assert_error(api(owner).post(f"/api/v1/projects/{project.slug}/keys", payload, format="json"), status, code)
    assert _snapshot() == before


def test_key_with_expiry(api, project, owner):
    body = api(owner).post(
        f"/api/v1/projects/{project.slug}/keys",
        {"name": "temp", "environment": "production", "expires_at": "2999-01-01T00:00:00Z"}, format="json",
    ).json()
    assert body["expires_at"].startswith("2999-01-01") and body["secret"].startswith("sb_prod_")


def test_revoke_then_the_key_is_refused(api, project, owner, dev_key):
    row, raw = dev_key
    assert api(key=raw).get("/api/v1/me").status_code == 200
    revoked = api(owner).post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert_error(api(key=raw).get("/api/v1/me"), 401, "revoked_key")
    # Revoking twice is harmless; rotating a revoked key is refused.
    assert api(owner).post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/revoke").status_code == 200
    assert_error(api(owner).post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/rotate", {"grace": "1h"}, format="json"), 409, "revoked_key")


def test_rotate_with_grace_keeps_both_keys_and_the_key_id(api, project, owner, dev_key):
    row, raw = dev_key
    rotated = api(owner).post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/rotate", {"grace": "1h"}, format="json")
    assert rotated.status_code == 201
    body = rotated.json()
    assert body["key_id"] == row.key_id and body["rotated_from"] == str(row.pk) and body["secret"] != raw
    assert api(key=raw).get("/api/v1/me").json()["key_id"] == row.key_id
    assert api(key=body["secret"]).get("/api/v1/me").json()["key_id"] == row.key_id
    old = api(owner).get(f"/api/v1/projects/{project.slug}/keys/{row.pk}").json()
    assert old["status"] == "rotating"
    assert_error(api(owner).post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/rotate", {"grace": "1h"}, format="json"), 409, "already_rotated")


def test_rotate_without_grace_refuses_the_old_key_at_once(api, project, owner, dev_key):
    row, raw = dev_key
    body = api(owner).post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/rotate", {"grace": "none"}, format="json").json()
    assert_error(api(key=raw).get("/api/v1/me"), 401, "rotated_key")
    assert api(key=body["secret"]).get("/api/v1/me").status_code == 200


def test_bad_grace_changes_nothing(api, project, owner, dev_key):
    row, _raw = dev_key
    before = _snapshot()
    assert_error(api(owner).post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/rotate", {"grace": "3w"}, format="json"), 400, "invalid_grace")
    assert _snapshot() == before


def test_member_can_list_keys_but_not_change_them(api, project, member, dev_key):
    row, _raw = dev_key
    client = api(member)
    assert [k["id"] for k in client.get(f"/api/v1/projects/{project.slug}/keys").json()] == [str(row.pk)]
    before = _snapshot()
    assert_error(client.post(f"/api/v1/projects/{project.slug}/keys", {"name": "x", "environment": "development"}, format="json"), 403, "forbidden")
    assert_error(client.post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/revoke"), 403, "forbidden")
    assert_error(client.post(f"/api/v1/projects/{project.slug}/keys/{row.pk}/rotate", {"grace": "1h"}, format="json"), 403, "forbidden")
    assert _snapshot() == before


# --- Authentication ----------------------------------------------------------------------------------

def test_me_accepts_bearer_and_both_basic_forms(api, dev_key, project):
    row, raw = dev_key
    for header in (
        f"Bearer {raw}",
        "Basic " + base64.b64encode(raw.encode()).decode(),
        "Basic " + base64.b64encode(f"{raw}:".encode()).decode(),
    ):
        client = APIClient()
        response = client.get("/api/v1/me", HTTP_AUTHORIZATION=header)
        assert response.status_code == 200, header
        assert response.json()["project"]["slug"] == project.slug
        assert response.json()["environment"] == "development"
        assert response.json()["key_id"] == row.key_id


@pytest.mark.parametrize(
    "header, code",
    [
        ("Bearer sb_dev_short", "malformed_key"),
        ("Bearer sb_dev_" + "A" * 38, "bad_checksum"),
        ("Token abc", "malformed_key"),
    ],
)
def test_bad_keys_get_401_with_their_code(header, code):
    response = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, code)


def test_unknown_key_is_401(db):
    from accounts.keys import key_generate

    assert_error(APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key_generate(env_short='dev')}"), 401, "unknown_key")


def test_anonymous_is_401(db):
    assert_error(APIClient().get("/api/v1/projects"), 401, "not_authenticated")


def test_session_writes_need_csrf(api, owner):
    client = api(owner, csrf=True)
    assert_error(client.post("/api/v1/projects", {"name": "No CSRF"}, format="json"), 403, "permission_denied")
    assert not Project.objects.filter(name="No CSRF").exists()
    client.get("/projects/new/")  # a page with a form sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    assert client.post("/api/v1/projects", {"name": "With CSRF"}, format="json", HTTP_X_CSRFTOKEN=token).status_code == 201


def test_api_key_caller_sees_only_its_own_project_read_only(api, project, other_project, dev_key):
    _row, raw = dev_key
    client = api(key=raw)
    assert [p["slug"] for p in client.get("/api/v1/projects").json()] == [project.slug]
    assert client.get(f"/api/v1/projects/{project.slug}").json()["slug"] == project.slug
    assert_error(client.get(f"/api/v1/projects/{other_project.slug}"), 404, "not_found")
    assert_error(client.get(f"/api/v1/projects/{other_project.slug}/keys"), 404, "not_found")
    before = _snapshot()
    assert_error(client.get(f"/api/v1/projects/{project.slug}/keys"), 403, "session_required")
    assert_error(client.post("/api/v1/projects", {"name": "By key"}, format="json"), 403, "session_required")
    assert_error(client.delete(f"/api/v1/projects/{project.slug}"), 403, "session_required")
    assert _snapshot() == before


# --- Error shapes ------------------------------------------------------------------------------------

def test_malformed_json_is_400(api, owner):
    before = _snapshot()
    response = api(owner).generic("POST", "/api/v1/projects", b'{"name": "half', content_type="application/json")
    assert_error(response, 400, "malformed_json")
    assert _snapshot() == before


def test_non_json_content_type_is_415(api, owner):
    before = _snapshot()
    response = api(owner).generic("POST", "/api/v1/projects", b"name=form", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")
    assert _snapshot() == before


def test_json_that_is_not_an_object_is_400(api, owner):
    response = api(owner).generic("POST", "/api/v1/projects", b'["a"]', content_type="application/json")
    assert_error(response, 400, "invalid")


def test_unknown_api_url_is_json_404(api, owner):
    assert_error(api(owner).get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(APIClient().get("/api/nope/"), 404, "not_found")


def test_wrong_method_is_json_405(api, owner, project):
    response = api(owner).put(f"/api/v1/projects/{project.slug}", {"name": "x"}, format="json")
    assert_error(response, 405, "method_not_allowed")
    assert_error(api(owner).delete("/api/v1/me"), 405, "method_not_allowed")


def test_malformed_key_id_is_404(api, owner, project):
    assert_error(api(owner).get(f"/api/v1/projects/{project.slug}/keys/not-a-uuid"), 404, "not_found")


def test_openapi_schema_and_docs_use_no_cdn(db):
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert "/api/v1/projects/{slug}/keys/{key_pk}/rotate" in paths and "/api/v1/me" in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "/static/drf_spectacular_sidecar/" in html
    assert "cdn" not in html.lower() and "https://" not in html


def test_django_level_errors_under_api_become_json(rf):
    """An unhandled exception or a plain Django error page under /api/ is rewritten as a JSON error;
    portal pages are left alone."""
    import asyncio

    from django.http import HttpResponseNotFound, HttpResponseServerError

    from accounts.api.middleware import ApiJsonErrorsMiddleware

    sync_mw = ApiJsonErrorsMiddleware(lambda request: HttpResponseServerError("<h1>Server Error</h1>"))
    assert_error(sync_mw(rf.get("/api/v1/anything")), 500, "server_error")
    assert sync_mw(rf.get("/projects/"))["Content-Type"].startswith("text/html")

    async def not_found(request):
        return HttpResponseNotFound("<h1>Not Found</h1>")

    async_mw = ApiJsonErrorsMiddleware(not_found)
    assert_error(asyncio.run(async_mw(rf.get("/api/v1/x"))), 404, "not_found")


def test_portal_404_uses_our_layout(client, owner):
    client.force_login(owner)
    response = client.get("/projects/does-not-exist/")
    assert response.status_code == 404 and "Page not found" in response.content.decode()
