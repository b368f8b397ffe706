"""The README documents every environment variable the settings read, and settings fail loudly."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_CALL = re.compile(r'env_(?:str|bool|int|float|list|url)\(\s*"([A-Z0-9_]+)"')


def _variables_read_by_the_code() -> set[str]:
    names = set()
    for path in [*BASE_DIR.glob("project/*.py"), *BASE_DIR.glob("accounts/**/*.py"), *BASE_DIR.glob("realtime/**/*.py")]:
        names |= set(ENV_CALL.findall(path.read_text()))
    return names


def test_every_environment_variable_is_in_the_readme_table():
    readme = (BASE_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\|\s*`([A-Z0-9_]+)`\s*\|", readme, flags=re.MULTILINE))
    read = _variables_read_by_the_code()
    assert read, "found no env_* calls: the pattern is out of date"
    assert read - documented == set(), "variables read but not documented in README.md"


@pytest.mark.parametrize(
    "name, value",
    [("DEBUG", "maybe"), ("DATABASE_URL", "nosuchdb://x"), ("REDIS_URL", "http://x"), ("SPEECH_WORKERS", "lots")],
)
def test_a_bad_value_stops_start_up_naming_the_variable(name, value):
    env = {**os.environ, name: value, "DJANGO_SETTINGS_MODULE": "project.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr
