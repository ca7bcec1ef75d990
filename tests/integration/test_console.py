"""The ops console in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
overview, a filtered message browser, a record view, a dry-run plan, a confirmed replay with progress, and
the counts and the audit log changing afterwards; the key kept for the tab only and signing out; one record
found by its event id and replayed alone. Screenshots go to tests/artifacts/console/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from shared.auth import KeyStore
from shared.kafka import KafkaConnection
from shared.topics import dlq_topic
from tests.integration.test_ops import ops_process
from tests.integration.test_replay import Dlq, fill_dlq, sources
from tests.support.processes import REPO

ARTIFACTS = REPO / "tests" / "artifacts" / "console"


@pytest.fixture
def console(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[str, str, Dlq]]:
    dlq = fill_dlq(kafka, registry_url, redis_url, dependency=30, garbage=10)
    key = KeyStore(redis.Redis.from_url(redis_url)).create("acme", ["dlq:read", "dlq:replay"], "1000/second")[0]
    with ops_process(dlq, tmp_path) as (url, _process):
        yield url, key, dlq


def shot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def sign_in(browser: WebDriver, url: str, key: str, dlq: Dlq) -> str:
    """Open the console, use ``key`` and wait for the overview; the CSS selector of ``dlq``'s row."""
    browser.get(url)
    browser.find_element(By.ID, "apikey").send_keys(key)
    browser.find_element(By.ID, "save-key").click()
    row = f'#dlqs tr[data-service="{dlq.service}"]'
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    return row


def test_the_console_filters_a_dlq_plans_and_runs_a_replay_and_the_counts_change(
    browser: WebDriver, console: tuple[str, str, Dlq]
) -> None:
    url, key, dlq = console
    wait = WebDriverWait(browser, 60)
    row = sign_in(browser, url, key, dlq)
    assert text(browser, f"{row} td:nth-child(3)") == "40"
    assert text(browser, f"{row} .pending") == "40" and text(browser, f"{row} .replayed") == "0"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart rect")) >= 2  # dependency and deserialization
    shot(browser, "1-overview")

    browser.find_element(By.CSS_SELECTOR, row).click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#records tbody tr")) == 40)
    browser.find_element(By.ID, "f-category").send_keys("dependency")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#records tbody tr")) == 30)
    assert {c.text for c in browser.find_elements(By.CSS_SELECTOR, "#records tbody td:nth-child(3)")} == {"dependency"}
    shot(browser, "2-filtered")

    browser.find_element(By.CSS_SELECTOR, "#records tbody tr").click()
    wait.until(lambda d: d.find_element(By.ID, "detail").is_displayed() and d.find_element(By.ID, "detail-stack").text)
    assert '"tenant": "acme"' in text(browser, "#detail-value")
    assert "CRM token expired" in text(browser, "#detail-error")
    shot(browser, "3-record")

    browser.find_element(By.ID, "replay-open").click()
    wait.until(lambda d: d.find_element(By.ID, "plan-count").text == "30")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plan-samples tbody tr")) == 5
    assert text(browser, "#replay-title") == "Replay the 30 records the filter selects"
    shot(browser, "4-dry-run")
    browser.find_element(By.ID, "replay-confirm").click()
    wait.until(lambda d: d.find_element(By.ID, "replay-outcome").get_attribute("data-outcome") == "done")
    assert text(browser, "#replay-progress") == "30 of 30"
    shot(browser, "5-replayed")
    browser.find_element(By.ID, "replay-close").click()

    browser.find_element(By.CSS_SELECTOR, 'nav button[data-tab="overview"]').click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"{row} .replayed").text == "30")
    assert text(browser, f"{row} .pending") == "10"
    shot(browser, "6-counts-changed")
    browser.find_element(By.CSS_SELECTOR, 'nav button[data-tab="audit"]').click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#audit-runs tbody tr"))
    outcomes = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#audit-runs tbody td:nth-child(5)")]
    assert outcomes[:2] == ["done", "dry_run"]
    shot(browser, "7-audit")


def test_the_key_is_kept_for_the_tab_only_and_signing_out_forgets_it(
    browser: WebDriver, console: tuple[str, str, Dlq]
) -> None:
    url, key, dlq = console
    sign_in(browser, url, key, dlq)
    stored = "return [sessionStorage.getItem('ops-api-key'), localStorage.getItem('ops-api-key')]"
    assert browser.execute_script(stored) == [key, None]

    browser.find_element(By.ID, "sign-out").click()
    assert browser.execute_script(stored) == [None, None]
    assert browser.find_element(By.ID, "apikey").is_displayed()
    assert not browser.find_element(By.ID, "sign-out").is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "#dlqs tbody tr")
    browser.refresh()
    assert browser.find_element(By.ID, "apikey").is_displayed()
    assert "Enter an API key" in text(browser, "#status")


def test_a_record_found_by_its_event_id_is_replayed_alone(browser: WebDriver, console: tuple[str, str, Dlq]) -> None:
    url, key, dlq = console
    wait = WebDriverWait(browser, 60)
    event_id = [e for e, category in dlq.event_ids.items() if category == "dependency"][4]  # DLQ record 1/1
    browser.find_element(By.CSS_SELECTOR, sign_in(browser, url, key, dlq)).click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#records tbody tr")) == 40)
    browser.find_element(By.ID, "f-event-id").send_keys(event_id)
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#records tbody tr")) == 1)
    assert text(browser, "#records tbody td:nth-child(5)") == event_id
    record = browser.find_element(By.CSS_SELECTOR, "#records tbody tr")
    coordinates = str(record.get_attribute("data-offset"))
    shot(browser, "8-by-event-id")

    record.click()
    wait.until(lambda d: d.find_element(By.ID, "detail").is_displayed() and d.find_element(By.ID, "detail-stack").text)
    browser.find_element(By.ID, "replay-record").click()
    wait.until(lambda d: d.find_element(By.ID, "plan-count").text == "1")
    assert text(browser, "#replay-title") == f"Replay record {coordinates}"
    assert text(browser, "#plan-refailed") == "0"
    shot(browser, "9-record-dry-run")
    browser.find_element(By.ID, "replay-confirm").click()
    wait.until(lambda d: d.find_element(By.ID, "replay-outcome").get_attribute("data-outcome") == "done")
    assert text(browser, "#replay-progress") == "1 of 1"
    assert sources(dlq.replayed()) == {f"{dlq_topic(dlq.service)}/{coordinates}": 1}
