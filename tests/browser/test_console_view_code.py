""""View code" on the console: the snippets for the console's current session settings, which run as
they are once a key replaces the placeholder."""
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from accounts.models import EnvironmentKind
from tests.browser.conftest import browser_user_prepare, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_view_code_follows_the_console_settings_and_runs(server_factory, page, owner, project, dev_key, tmp_path,
                                                         artifacts_dir):
    _row, raw = dev_key
    browser_user_prepare(owner)
    server = server_factory()
    sign_in(page, server, owner.email)
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)

    page.goto(f"{server.http_url}/projects/{project.slug}/console/")
    page.locator("#setting-instructions").fill("Answer in one short sentence.")
    page.locator("#setting-voice").select_option("marin")
    page.locator("#setting-modalities").select_option("text")
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="View code").click()
    code_page = opened.value
    code_page.wait_for_load_state()
    python = code_page.locator("#snippet-python")
    expect(python).to_contain_text("Answer in one short sentence.")
    expect(python).to_contain_text("'voice': 'marin'".replace("'", '"'))
    expect(python).to_contain_text(deployment.deployment_key)
    expect(python).to_contain_text("YOUR_SWITCHBOARD_API_KEY")  # the console's own key is never shown
    expect(code_page.locator("#snippet-curl-token")).to_contain_text("Answer in one short sentence.")
    code_page.screenshot(path=str(artifacts_dir / "console-view-code.png"), full_page=True)

    script = tmp_path / "console_code.py"
    script.write_text(python.inner_text().replace("YOUR_SWITCHBOARD_API_KEY", raw))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.stdout, run.stderr, server.log()[-3000:])
    assert "turn complete: completed" in run.stdout, run.stdout
