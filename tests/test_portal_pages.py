"""Portal pages: projects, keys (secret shown once), rotate, revoke, members, rename, delete; bad
input gets a clear message and changes nothing; every input is labelled and every asset is ours."""
import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from accounts.models import ApiKey, Membership, Project, Role

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 makes each fixture user cost ~1s on a loaded machine; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def as_user():
    def client_for(user):
        client = Client()
        client.force_login(user)
        return client

    return client_for


def _state():
    return (
        sorted(Project.objects.values_list("slug", "name")),
        sorted(Membership.objects.values_list("user_id", "project_id", "role")),
        sorted(ApiKey.objects.values_list("pk", "name", "revoked_at", "rotation_grace_ends_at")),
    )


def _text(response) -> str:
    return response.content.decode()


SECRET_RE = re.compile(r"sb_(?:dev|stg|prod)_[0-9A-Za-z]{38}")


def test_dashboard_lists_only_my_projects(as_user, project, other_project, member):
    html = _text(as_user(member).get("/projects/"))
    assert project.name in html and other_project.name not in html


def test_create_project_from_the_form(as_user, owner):
    client = as_user(owner)
    assert client.get("/projects/new/").status_code == 200
    response = client.post("/projects/new/", {"name": "Call Centre"})
    assert response.status_code == 302 and response["Location"] == "/projects/call-centre/"
    page = _text(client.get("/projects/call-centre/"))
    for heading in ("Development", "Staging", "Production"):
        assert f">{heading}</h2>" in page
    assert "Project “Call Centre” created." in page


@pytest.mark.parametrize("name, message", [("", "This field is required."), ("   ", "This field is required."),
                                           ("x" * 101, "at most 100 characters")])
def test_bad_project_names_show_an_error_and_change_nothing(as_user, owner, name, message):
    before = _state()
    response = as_user(owner).post("/projects/new/", {"name": name})
    assert response.status_code == 400 and message in _text(response)
    assert _state() == before


def test_key_secret_is_shown_exactly_once(as_user, project, owner):
    client = as_user(owner)
    form = client.get(f"/projects/{project.slug}/keys/new/?environment=production")
    assert form.status_code == 200 and 'value="production" selected' in _text(form)
    posted = client.post(f"/projects/{project.slug}/keys/new/", {"name": "backend", "environment": "production"})
    # Redirect after POST: reloading the page the browser lands on cannot create a second key.
    assert posted.status_code == 302
    response = client.get(posted["Location"])
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    html = _text(response)
    secrets_shown = SECRET_RE.findall(html)
    assert len(set(secrets_shown)) == 1 and secrets_shown[0].startswith("sb_prod_")
    assert 'data-copy-target="new-key-secret"' in html and ">Copy</button>" in html
    secret = secrets_shown[0]
    key = ApiKey.objects.get(name="backend")
    assert key.environment.kind == "production" and secret.endswith(key.last4)

    reloaded = _text(client.get(posted["Location"]))
    assert secret not in reloaded and not SECRET_RE.search(reloaded) and "cannot be shown again" in reloaded
    assert ApiKey.objects.filter(name="backend").count() == 1

    listing = _text(client.get(f"/projects/{project.slug}/"))
    assert secret not in listing and not SECRET_RE.search(listing)
    assert key.masked in listing and "backend" in listing and "never" in listing and ">active<" in listing


def test_key_with_expiry_from_the_form(as_user, project, owner):
    client = as_user(owner)
    client.post(f"/projects/{project.slug}/keys/new/", {"name": "temp", "environment": "staging", "expires_at": "2999-05-01T12:00"})
    key = ApiKey.objects.get(name="temp")
    assert key.expires_at.year == 2999
    assert "2999-05-01 12:00" in _text(client.get(f"/projects/{project.slug}/"))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "k", "environment": "qa"}, "The environment must be one of"),
        ({"name": "", "environment": "development"}, "This field is required."),
        ({"name": "k" * 101, "environment": "development"}, "at most 100 characters"),
        ({"name": "k", "environment": "development", "expires_at": "2001-01-01T00:00"}, "The expiry must be in the future."),
        ({"name": "k", "environment": "development", "expires_at": "soon"}, "Enter a valid date/time."),
    ],
)
def test_bad_key_input_shows_an_error_and_changes_nothing(as_user, project, owner, data, message):
    before = _state()
    response = as_user(owner).post(f"/projects/{project.slug}/keys/new/", data)
    assert response.status_code == 400 and message in _text(response)
    assert not SECRET_RE.search(_text(response))
    assert _state() == before


def test_revoke_from_the_page(as_user, project, owner, dev_key):
    row, _raw = dev_key
    client = as_user(owner)
    confirm = client.get(f"/projects/{project.slug}/keys/{row.pk}/revoke/")
    assert row.masked in _text(confirm) and "Revoke key</button>" in _text(confirm)
    response = client.post(f"/projects/{project.slug}/keys/{row.pk}/revoke/")
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    page = _text(client.get(f"/projects/{project.slug}/"))
    assert ">revoked<" in page and f"({row.masked}) revoked." in page


@pytest.mark.parametrize("grace, status", [("1h", "rotating"), ("none", "rotated")])
def test_rotate_from_the_page(as_user, project, owner, dev_key, grace, status):
    row, raw = dev_key
    client = as_user(owner)
    form = _text(client.get(f"/projects/{project.slug}/keys/{row.pk}/rotate/"))
    for value in ("none", "1h", "24h", "7d"):
        assert f'value="{value}"' in form
    posted = client.post(f"/projects/{project.slug}/keys/{row.pk}/rotate/", {"grace": grace})
    assert posted.status_code == 302
    response = client.get(posted["Location"])
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    new_secret = SECRET_RE.search(_text(response)).group(0)
    assert new_secret != raw and "Key rotated" in _text(response)
    new_row = ApiKey.objects.get(rotated_from=row)
    assert new_row.key_id == row.key_id
    assert f">{status}<" in _text(client.get(f"/projects/{project.slug}/"))


def test_bad_grace_changes_nothing(as_user, project, owner, dev_key):
    before = _state()
    response = as_user(owner).post(f"/projects/{project.slug}/keys/{dev_key[0].pk}/rotate/", {"grace": "forever"})
    assert response.status_code == 400 and "grace period must be one of" in _text(response)
    assert _state() == before


def test_members_invite_role_change_and_leave(as_user, project, owner, member, outsider):
    client = as_user(owner)
    response = client.post(f"/projects/{project.slug}/members/", {"email": outsider.email, "role": "admin"})
    assert response.status_code == 302
    invited = Membership.objects.get(user=outsider, project=project)
    assert invited.role == Role.ADMIN
    page = _text(client.get(f"/projects/{project.slug}/members/"))
    assert "outsider@example.com added as admin." in page

    client.post(f"/projects/{project.slug}/members/{invited.pk}/role/", {"role": "member"})
    invited.refresh_from_db()
    assert invited.role == Role.MEMBER

    own = Membership.objects.get(user=member, project=project)
    response = as_user(member).post(f"/projects/{project.slug}/members/{own.pk}/remove/")
    assert response.status_code == 302 and response["Location"] == "/projects/"
    assert as_user(member).get(f"/projects/{project.slug}/").status_code == 404


@pytest.mark.parametrize(
    "email, message",
    # An address without an account is invited by email (tests/test_invitations_and_verification.py).
    [("not-an-email", "Enter a valid email address."), ("member@example.com", "already a member")],
)
def test_bad_invites_show_an_error_and_change_nothing(as_user, project, owner, email, message):
    before = _state()
    response = as_user(owner).post(f"/projects/{project.slug}/members/", {"email": email, "role": "member"})
    assert response.status_code in (400, 409) and message in _text(response)
    assert _state() == before


def test_last_owner_cannot_leave(as_user, project, owner):
    before = _state()
    own = Membership.objects.get(user=owner, project=project)
    page = _text(as_user(owner).get(f"/projects/{project.slug}/members/"))
    assert "Leave project" not in page and "You are the only owner" in page
    response = as_user(owner).post(f"/projects/{project.slug}/members/{own.pk}/remove/", follow=True)
    assert "A project must keep an owner" in _text(response)
    assert _state() == before


def test_rename_and_delete_with_confirmation(as_user, project, owner):
    client = as_user(owner)
    assert client.post(f"/projects/{project.slug}/settings/", {"name": "Acme Renamed"}).status_code == 302
    assert Project.objects.get(pk=project.pk).name == "Acme Renamed"

    before = _state()
    wrong = client.post(f"/projects/{project.slug}/delete/", {"confirm": "something-else"})
    assert wrong.status_code == 400 and "nothing was deleted" in _text(wrong)
    empty = client.post(f"/projects/{project.slug}/settings/", {"name": ""})
    assert empty.status_code == 400
    assert _state() == before

    response = client.post(f"/projects/{project.slug}/delete/", {"confirm": project.slug})
    assert response.status_code == 302 and response["Location"] == "/projects/"
    # Archived (its billing history stays), gone from every page.
    assert Project.objects.get(pk=project.pk).deleted_at is not None
    assert client.get(f"/projects/{project.slug}/").status_code == 404
    assert "Acme Renamed" not in _text(client.get("/projects/"))


def test_admin_cannot_delete_the_project(as_user, project, outsider):
    Membership.objects.create(user=outsider, project=project, role=Role.ADMIN)
    before = _state()
    response = as_user(outsider).post(f"/projects/{project.slug}/delete/", {"confirm": project.slug})
    assert response.status_code == 403 and "does not allow you to delete" in _text(response)
    assert _state() == before


def test_project_named_new_does_not_shadow_the_create_page(as_user, owner):
    as_user(owner).post("/projects/new/", {"name": "New"})
    project = Project.objects.get(name="New")
    assert project.slug != "new"
    assert as_user(owner).get(f"/projects/{project.slug}/").status_code == 200


# --- Accessibility and assets ----------------------------------------------------------------------

class _PageAudit(HTMLParser):
    def __init__(self):
        super().__init__()
        self.labels_for, self.controls, self.buttons, self.assets = set(), [], [], []
        self._button, self._label_depth, self._labelled_inline = None, 0, set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "label":
            self._label_depth += 1
            if attrs.get("for"):
                self.labels_for.add(attrs["for"])
        if tag in ("input", "select", "textarea") and attrs.get("type") not in ("hidden", "submit"):
            self.controls.append(attrs.get("id"))
            if self._label_depth and attrs.get("id"):
                self._labelled_inline.add(attrs["id"])
        if tag == "button":
            self._button = ""
        if tag in ("script", "img") and attrs.get("src"):
            self.assets.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.assets.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "label":
            self._label_depth -= 1
        if tag == "button" and self._button is not None:
            self.buttons.append(self._button.strip())
            self._button = None

    def handle_data(self, data):
        if self._button is not None:
            self._button += data

    def unlabelled(self):
        return [c for c in self.controls if not c or (c not in self.labels_for and c not in self._labelled_inline)]


def _pages(project, key):
    return [
        "/projects/", "/projects/new/", f"/projects/{project.slug}/", f"/projects/{project.slug}/keys/new/",
        f"/projects/{project.slug}/keys/{key.pk}/rotate/", f"/projects/{project.slug}/keys/{key.pk}/revoke/",
        f"/projects/{project.slug}/members/", f"/projects/{project.slug}/settings/",
    ]


def test_every_input_is_labelled_every_button_has_text_and_assets_are_ours(as_user, project, owner, member, dev_key):
    client = as_user(owner)
    pages = _pages(project, dev_key[0])
    responses = [client.get(p) for p in pages]
    responses.append(client.post(f"/projects/{project.slug}/keys/new/", {"name": "a11y", "environment": "development"},
                                 follow=True))
    anonymous = Client()
    responses += [anonymous.get(p) for p in ("/accounts/login/", "/accounts/signup/", "/accounts/password/reset/")]
    for response in responses:
        assert response.status_code == 200
        audit = _PageAudit()
        audit.feed(_text(response))
        assert audit.controls or audit.buttons
        assert not audit.unlabelled(), (response.request["PATH_INFO"], audit.unlabelled())
        assert all(audit.buttons), response.request["PATH_INFO"]
        assert audit.assets and all(a.startswith("/static/") for a in audit.assets), audit.assets


def test_allauth_pages_use_our_layout(db):
    html = _text(Client().get("/accounts/login/"))
    assert 'class="site-header"' in html and "/static/css/portal.css" in html
