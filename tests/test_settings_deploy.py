"""Production-like settings pass ``manage.py check --deploy`` with no warnings; EMAIL_FILE_PATH
switches email to files that a test can read."""
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit]

BASE_DIR = Path(__file__).resolve().parent.parent


def _manage(args, env, tmp_path):
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_reports_no_warnings(tmp_path):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "switchboard.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://switchboard.example.com",
        "SITE_URL": "https://switchboard.example.com",
    }
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_catches_insecure_production(tmp_path):
    """The check is real: turning off HTTPS hardening in production makes it fail."""
    env = {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "x.example.com",
           "SECURE_SSL_REDIRECT": "false", "SECURE_COOKIES": "false"}
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode != 0 and "security.W008" in result.stderr


def test_email_file_path_writes_the_outbox_to_files(tmp_path):
    outbox = tmp_path / "outbox"
    code = (
        "from django.core.mail import send_mail; from django.conf import settings;"
        "send_mail('Hi', 'Body text', None, ['to@example.com']); print(settings.EMAIL_BACKEND)"
    )
    result = _manage(["shell", "-c", code], {"EMAIL_FILE_PATH": str(outbox)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "filebased" in result.stdout
    files = list(outbox.iterdir())
    assert len(files) == 1 and "Body text" in files[0].read_text()
