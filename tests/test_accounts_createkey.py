"""``manage.py createkey``: prints only the key; with --owner creates the user and project."""
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.keys import KEY_PATTERN, api_key_verify
from accounts.models import ApiKey, Project, User

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 makes each fixture user cost ~1s on a loaded machine; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _run(*args) -> str:
    out = StringIO()
    call_command("createkey", *args, stdout=out)
    return out.getvalue()


def test_creates_user_project_and_key_printing_only_the_key():
    out = _run("--project", "ops-demo", "--env", "development", "--name", "ci", "--owner", "Ops@Example.com")
    key = out.strip()
    assert out == key + "\n" and KEY_PATTERN.match(key)
    verified = api_key_verify(raw=key)
    assert verified.project_slug == "ops-demo" and verified.environment == "development" and verified.name == "ci"
    user = User.objects.get(email="ops@example.com")
    assert not user.has_usable_password()
    assert Project.objects.get(slug="ops-demo").owner == user


def test_existing_project_and_owner_are_reused(project, owner):
    key = _run("--project", project.slug, "--env", "production", "--name", "deploy", "--owner", owner.email).strip()
    assert api_key_verify(raw=key).project_id == project.pk and key.startswith("sb_prod_")
    key2 = _run("--project", project.slug, "--env", "staging", "--name", "deploy2").strip()
    assert api_key_verify(raw=key2).environment == "staging"
    assert Project.objects.count() == 1 and User.objects.filter(email=owner.email).count() == 1


def test_refusals_create_nothing(project, member):
    with pytest.raises(CommandError, match="no project"):
        _run("--project", "missing", "--env", "development", "--name", "x")
    with pytest.raises(CommandError, match="not an owner"):
        _run("--project", project.slug, "--env", "development", "--name", "x", "--owner", member.email)
    with pytest.raises(CommandError, match="empty_name"):
        _run("--project", project.slug, "--env", "development", "--name", " ")
    with pytest.raises(CommandError, match="invalid_email"):
        _run("--project", "fresh", "--env", "development", "--name", "x", "--owner", "not-an-email")
    with pytest.raises(CommandError):
        _run("--project", project.slug, "--env", "qa", "--name", "x")
    assert not ApiKey.objects.exists() and not Project.objects.filter(slug__in=["missing", "fresh"]).exists()


def test_stdout_is_only_the_key_in_a_real_process(tmp_path):
    """Through manage.py itself, as scripts use it (own SQLite file, so no shared test DB is needed)."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "PATH": "/usr/bin:/bin", "DEBUG": "true"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True, env=env, capture_output=True)
    result = subprocess.run(
        [sys.executable, "manage.py", "createkey", "--project", "p1", "--env", "staging", "--name", "n", "--owner", "a@example.com"],
        check=True, env=env, capture_output=True, text=True,
    )
    assert KEY_PATTERN.match(result.stdout.strip()) and result.stdout.count("\n") == 1
