"""Shared browser fixtures: Debian's headless Chromium driven by Playwright's Python package.

``playwright install`` cannot work here, so the system browser is launched by path. Playwright's sync
API runs an event loop in this thread, so Django's async-safety guard is relaxed for browser tests
(database work still happens only between browser calls, never concurrently)."""
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def chromium_browser():
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_context(chromium_browser):
    """A fresh context (cookies, storage) that may use the clipboard, as a user granting it would."""
    context = chromium_browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(20_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser_context):
    return browser_context.new_page()


BROWSER_PASSWORD = "correct horse battery staple"


def browser_user_prepare(user) -> None:
    """Let ``user`` sign in to a server process: a password hashed with the default hasher (the test
    settings' fast one is not the server's) and a verified email address."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    user.password = PBKDF2PasswordHasher().encode(BROWSER_PASSWORD, "browsersalt")
    user.save(update_fields=["password"])
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)


def sign_in(page, server, email: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.http_url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(BROWSER_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(f"{server.http_url}/projects/")


def wait_for_function(page, expression: str, timeout: float = 30_000) -> None:
    """page.wait_for_function without eval: Playwright builds its predicate with eval in the page,
    which the Content-Security-Policy refuses; page.evaluate runs outside the page's CSP."""
    import time

    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression} still false after {timeout} ms")
        page.wait_for_timeout(50)  # polling the page's state, as Playwright's own wait does (every frame)
