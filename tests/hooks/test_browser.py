"""The admin flow in a real browser: Debian's Chromium, headless, driven by Selenium.

Selenium rather than Playwright: Debian ships ``chromium-driver`` built from the same source
as ``chromium``, so driver and browser always match and nothing is downloaded (Playwright's
client expects its own browser build and a Node driver bundled in the wheel).

Against pytest-django's ``live_server`` and a real receiver on 127.0.0.1: sign in, add a hook
on a project page, change a pipeline through the services, see the deliveries on the hook's
page, open one, send a test event, resend a delivery. Celery runs eagerly here, so a
committed change is delivered in the test's own thread; the real worker has its own tests.
"""

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as until
from selenium.webdriver.support.ui import WebDriverWait

from hooks.models import Delivery, Hook
from pipelines import services
from tests.factories import ProjectFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
PASSWORD = "correct horse battery staple"


def start_chromium() -> webdriver.Chrome:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"The browser test needs Debian's Chromium and its driver; missing: "
            f"{', '.join(missing)}. Install them with: "
            "sudo apt-get update && sudo apt-get install -y chromium chromium-driver",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.fixture
def eager_celery(settings):
    """Deliver on commit in the committing thread, with no broker. Celery reads its settings
    from Django's, where a CELERY_ name wins over a value set on ``celery_app.conf``."""
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
def offline_selenium(monkeypatch):
    # The driver path is given; Selenium Manager must never try to download one.
    monkeypatch.setenv("SE_OFFLINE", "true")


def test_admin_flow_add_hook_see_deliveries_test_and_resend(
    live_server, transactional_db, receiver, eager_celery, offline_selenium, settings
):
    # A fast hasher: the password is hashed at creation and checked at sign-in.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    project = ProjectFactory(name="Web Shop", path="web", namespace="acme")
    browser = start_chromium()
    # A page replaced mid-check leaves stale elements: look again rather than fail.
    wait = WebDriverWait(
        browser, 15, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )

    def open_page(path: str) -> None:
        browser.get(live_server.url + path)

    def text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    def see(fragment: str) -> None:
        wait.until(lambda _: fragment in text(), f"expected {fragment!r} on {browser.current_url}")

    try:
        # Sign in.
        open_page("/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        see("Projects, pipelines and hooks")

        # Add a hook on the project's page.
        open_page(f"/admin/pipelines/project/{project.pk}/change/")
        wait.until(until.element_to_be_clickable((By.LINK_TEXT, "Add another Hook"))).click()
        wait.until(until.visibility_of_element_located((By.NAME, "hooks-0-url")))
        browser.find_element(By.NAME, "hooks-0-name").send_keys("deploy bot")
        browser.find_element(By.NAME, "hooks-0-url").send_keys(receiver.url)
        # The security settings sit in a collapsed section: open it, set a secret token.
        browser.find_element(By.CSS_SELECTOR, "#hooks-0 details summary").click()
        token_field = wait.until(until.visibility_of_element_located((By.NAME, "hooks-0-token")))
        token_field.send_keys("browser-secret")
        browser.find_element(By.NAME, "_continue").click()
        see("was changed successfully")
        hook = Hook.objects.get()
        assert (hook.name, hook.url.reveal(), hook.token.reveal()) == (
            "deploy bot",
            receiver.url,
            "browser-secret",
        )
        assert "browser-secret" not in browser.page_source

        # A pipeline is created and starts running: two deliveries.
        pipeline = services.create_pipeline(project, ref="main", sha="e" * 40)
        services.transition_pipeline(pipeline, "running")
        sent = receiver.wait_for(2)
        assert [json.loads(r.body)["object_attributes"]["status"] for r in sent] == [
            "created",
            "running",
        ]
        assert all(r.header("X-Gitlab-Token") == "browser-secret" for r in sent)

        # The hook's page lists them.
        browser.find_element(By.PARTIAL_LINK_TEXT, "deliveries, tests and health").click()
        see("Recent deliveries")
        rows = browser.find_elements(By.CSS_SELECTOR, "#recent-deliveries tr.delivery-row")
        assert len(rows) == 2
        assert all("succeeded" in row.text for row in rows)
        assert "→ running" in rows[0].text and "→ created" in rows[1].text

        # Open the newest delivery: request headers, body and the receiver's answer.
        rows[0].find_element(By.PARTIAL_LINK_TEXT, "→ running").click()
        see("Attempts")
        headers = browser.find_element(By.CSS_SELECTOR, "#delivery-attempts .request-headers")
        assert "X-Gitlab-Event: Pipeline Hook" in headers.text
        assert "X-Gitlab-Token: [REDACTED]" in headers.text
        assert '"status": "running"' in browser.find_element(By.CSS_SELECTOR, ".request-body").text
        assert "ok" in browser.find_element(By.CSS_SELECTOR, ".response-body").text
        browser.back()

        # Send a test event.
        wait.until(until.element_to_be_clickable((By.ID, "send-test-event"))).click()
        see("Test event delivered: HTTP 200")
        test_request = receiver.wait_for(3)[2]
        assert json.loads(test_request.body)["object_attributes"]["id"] == pipeline.pk
        assert "Recent test events" in text()

        # Resend the first delivery: the same event and Idempotency-Key again.
        first = Delivery.objects.order_by("pk").first()
        resend = browser.find_element(
            By.CSS_SELECTOR, f'tr[data-delivery="{first.pk}"] button.resend-delivery'
        )
        resend.click()
        see(f"Delivery {first.pk} resent: HTTP 200")
        resent = receiver.wait_for(4)[3]
        assert resent.header("Idempotency-Key") == sent[0].header("Idempotency-Key")
        assert resent.body == sent[0].body
        assert browser.current_url.endswith(f"/admin/hooks/hook/{hook.pk}/change/")
    finally:
        browser.quit()
