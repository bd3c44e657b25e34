"""The dashboard in a real browser (Debian's Chromium, headless, as test_browser.py): the
front page's chart and the hook page's success-rate chart render from the server's SVG
with no network, and the screenshots show them drawn: bars with heights, and pixels of the
bars' colours in the chart's area of the PNG."""

import io

import pytest
from django.contrib.auth import get_user_model
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hooks.admin.charts import FAILED, SUCCEEDED
from hooks.delivery import deliver_batch
from pipelines import services
from tests.factories import HookFactory, ProjectFactory
from tests.hooks.receiver import Reply
from tests.hooks.test_browser import PASSWORD, offline_selenium, start_chromium  # noqa: F401


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def pixels_near(png: bytes, colour: str, tolerance: int = 40) -> int:
    """How many pixels of the screenshot are about ``colour``."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    target = rgb(colour)
    return sum(
        1
        for pixel in image.get_flattened_data()
        if all(
            abs(channel - wanted) <= tolerance
            for channel, wanted in zip(pixel, target, strict=True)
        )
    )


def bar_heights(browser, selector: str) -> list[float]:
    return [
        float(bar.get_attribute("height"))
        for bar in browser.find_elements(By.CSS_SELECTOR, selector)
    ]


@pytest.mark.usefixtures("offline_selenium")
def test_dashboard_and_hook_charts_render_in_chromium(
    live_server, transactional_db, receiver, settings
):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    project = ProjectFactory()
    hook = HookFactory(project=project, url=receiver.url, name="charted")
    for number, status in enumerate([200, 200, 200, 500, 200, 500]):
        services.create_pipeline(project, ref="main", sha=f"{number:040x}")
        receiver.default = Reply(status)
        deliver_batch([hook.deliveries.order_by("-pk").first().pk])

    browser = start_chromium()
    wait = WebDriverWait(browser, 15, poll_frequency=0.1)
    try:
        browser.get(live_server.url + "/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait.until(lambda b: b.find_elements(By.ID, "delivery-chart"))

        chart = browser.find_element(By.ID, "delivery-chart")
        assert chart.size["width"] > 300 and chart.size["height"] > 100
        assert max(bar_heights(browser, "#delivery-chart rect.bar-succeeded")) > 0
        assert max(bar_heights(browser, "#delivery-chart rect.bar-failed")) > 0
        assert browser.find_element(By.ID, "dashboard-succeeded").text == "4"
        assert browser.find_element(By.ID, "dashboard-failed").text == "2"
        png = chart.screenshot_as_png
        assert pixels_near(png, SUCCEEDED) > 20, "no green bar drawn"
        assert pixels_near(png, FAILED) > 10, "no red bar drawn"
        assert "charted" in browser.find_element(By.ID, "failing-hooks").text

        browser.get(f"{live_server.url}/admin/hooks/hook/{hook.pk}/change/")
        wait.until(lambda b: b.find_elements(By.ID, "hook-success-chart"))
        rates = browser.find_elements(By.CSS_SELECTOR, "#hook-success-chart rect.bar-rate")
        drawn = [bar for bar in rates if bar.get_attribute("data-rate")]
        assert len(drawn) == 1 and drawn[0].get_attribute("data-rate") == "0.6667"
        assert float(drawn[0].get_attribute("height")) > 20
        png = browser.find_element(By.ID, "hook-success-chart").screenshot_as_png
        # Two thirds succeeded: below 90 %, so the bar is drawn in the failure colour.
        assert pixels_near(png, FAILED) > 20
    finally:
        browser.quit()
