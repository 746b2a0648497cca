"""The web pages in headless Chromium (Debian's chromium + chromedriver, installed by .ci/run)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve.auth import Role
from tests.serve.conftest import ingest_demo, make_settings, seed_store
from tests.serve.live import live_server
from tests.serve.runs import make_run

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 60
# The README's picture of the chat page, rewritten by the cited-answer test when UPDATE_SCREENSHOTS=1 (left
# alone otherwise, so that a test run does not change a tracked file).
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "chat.png"
SITE: dict[str, Any] = {}  # the site's settings, for the test that trains into its runs folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "chromium and chromedriver are missing: run .ci/run (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    profile = tempfile.mkdtemp(prefix="specialist-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    settings = make_settings(tmp_path_factory.mktemp("browser"))
    customers = seed_store(settings)
    ingest_demo(settings)
    make_run(settings.finetune.runs_dir, "run-good", passed=True)
    make_run(settings.finetune.runs_dir, "run-bad", passed=False)
    SITE["settings"] = settings
    with live_server(settings) as (base, services):
        keys = {
            "customer": services.keys.create(role=Role.customer, customer_id=customers[0]).secret,
            "owner": services.keys.create(role=Role.content_owner).secret,
            "engineer": services.keys.create(role=Role.engineer, name="browser").secret,
        }
        yield base, keys


def _wait(driver: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S)


def _ask(driver: Any, base: str, key: str, question: str) -> Any:
    """Open the chat page in a new conversation, ask, and return the finished assistant message."""
    from selenium.webdriver.common.by import By

    driver.get("about:blank")  # a real load, not a same-page hash change
    driver.get(f"{base}/chat#key={key}")
    _wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=new-conversation]"))
    driver.find_element(By.CSS_SELECTOR, "[data-testid=new-conversation]").click()
    _wait(driver).until(lambda d: d.execute_script("return conversation !== null && !busy"))
    box = driver.find_element(By.CSS_SELECTOR, "[data-testid=chat-input]")
    box.send_keys(question)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=chat-send]").click()
    _wait(driver).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=msg-assistant][data-streaming=false]")
    )
    assert driver.find_element(By.CSS_SELECTOR, "[data-testid=chat-error]").text == ""
    return driver.find_elements(By.CSS_SELECTOR, "[data-testid=msg-assistant]")[-1]


def test_customer_chats_and_sees_a_cited_answer(browser: Any, site: tuple[str, dict[str, str]]) -> None:
    from selenium.webdriver.common.by import By

    base, keys = site
    answer = _ask(browser, base, keys["customer"], "How long do I have to return an item?")
    assert "[" in answer.text
    citations = answer.find_elements(By.CSS_SELECTOR, "[data-testid=citation]")
    assert citations and citations[0].get_attribute("data-doc-id") == "returns"
    assert any(
        "looking" in a.text or "checking" in a.text
        for a in browser.find_elements(By.CSS_SELECTOR, "[data-testid=activity]")
    )
    citations[0].click()
    _wait(browser).until(
        lambda d: "Return" in d.find_element(By.CSS_SELECTOR, "[data-testid=source-title]").text
    )
    _wait(browser).until(
        lambda d: len(d.find_element(By.CSS_SELECTOR, "[data-testid=source-text]").text) > 100
    )
    # The key left the address bar once stored.
    assert "key=" not in browser.current_url
    picture = browser.get_screenshot_as_png()
    assert picture.startswith(b"\x89PNG")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(picture)


def test_customer_sees_the_hand_off_state(browser: Any, site: tuple[str, dict[str, str]]) -> None:
    from selenium.webdriver.common.by import By

    base, keys = site
    _ask(browser, base, keys["customer"], "I want to talk to a human please")
    banner = _wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=handoff-state]"))
    assert "human" in banner.text
    # Reloading the conversation from the list keeps showing it as handed off.
    browser.refresh()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=conversation]"))
    first = browser.find_elements(By.CSS_SELECTOR, "[data-testid=conversation]")[0]
    assert "handed off" in first.text
    first.click()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=handoff-state]"))


def test_content_owner_deletes_a_policy_and_answers_stop_citing_it(
    browser: Any, site: tuple[str, dict[str, str]]
) -> None:
    from selenium.webdriver.common.by import By

    base, keys = site
    before = _ask(browser, base, keys["customer"], "Do gift cards expire?")
    cited = [
        c.get_attribute("data-doc-id")
        for c in before.find_elements(By.CSS_SELECTOR, "[data-testid=citation]")
    ]
    assert "gift-cards" in cited

    browser.get(f"{base}/kb#key={keys['owner']}")
    row = "[data-testid=doc-row][data-doc-id=gift-cards]"
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    browser.find_element(By.CSS_SELECTOR, f"{row} [data-testid=doc-delete]").click()
    _wait(browser).until(lambda d: d.switch_to.alert).accept()
    _wait(browser).until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))
    summary = browser.find_element(By.CSS_SELECTOR, "[data-testid=kb-report-summary]").text
    assert "delete" in summary and "deleted: 1" in summary

    after = _ask(browser, base, keys["customer"], "Do gift cards expire?")
    cited = [
        c.get_attribute("data-doc-id") for c in after.find_elements(By.CSS_SELECTOR, "[data-testid=citation]")
    ]
    assert "gift-cards" not in cited


def test_engineer_promotes_a_model(browser: Any, site: tuple[str, dict[str, str]]) -> None:
    from selenium.webdriver.common.by import By

    base, keys = site
    browser.get(f"{base}/models#key={keys['engineer']}")
    good = "[data-testid=run][data-run-id=run-good]"
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{good} [data-testid=gate-badge]"))
    assert browser.find_element(By.CSS_SELECTOR, f"{good} [data-testid=gate-badge]").text == "gate passed"
    assert browser.find_elements(By.CSS_SELECTOR, f"{good} [data-testid=gate-chart] rect")
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{good} [data-testid='chart-gate.png']"))
    assert "default" in browser.find_element(By.CSS_SELECTOR, "[data-testid=live-model]").text

    bad = "[data-testid=run][data-run-id=run-bad]"
    browser.find_element(By.CSS_SELECTOR, f"{bad} [data-testid=promote]").click()
    _wait(browser).until(
        lambda d: "failed its gate" in d.find_element(By.CSS_SELECTOR, "[data-testid=models-error]").text
    )

    browser.find_element(By.CSS_SELECTOR, f"{good} [data-testid=promote]").click()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{good} [data-testid=live-badge]"))
    assert "run-good" in browser.find_element(By.CSS_SELECTOR, "[data-testid=live-model]").text
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=models-error]").text == ""

    # The customer's next answer comes from the service with the promoted model, without a restart.
    answer = _ask(browser, base, keys["customer"], "How long do I have to return an item?")
    assert answer.find_elements(By.CSS_SELECTOR, "[data-testid=citation]")


def test_rating_review_correction_export_and_dpo_on_it(
    browser: Any, site: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    import hashlib
    import json

    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from finetune.registry import live_data
    from finetune.train import train_dpo
    from tests.finetune.conftest import tiny_config

    base, keys = site
    email = "ada.lovelace@example.com"
    # the customer rates a reply down, with a comment
    answer = _ask(browser, base, keys["customer"], f"Do gift cards expire? I am {email}")
    conversation = browser.execute_script("return conversation.id")
    answer.find_element(By.CSS_SELECTOR, "[data-testid=rating-comment]").send_keys("look up my account")
    answer.find_element(By.CSS_SELECTOR, "[data-testid=rate-down]").click()
    _wait(browser).until(
        lambda d: "colleague" in answer.find_element(By.CSS_SELECTOR, "[data-testid=rating-status]").text
    )

    # the conversation is in the engineer's review queue, with its reason
    browser.get("about:blank")
    browser.get(f"{base}/review#key={keys['engineer']}")
    queued = f"[data-testid=queued][data-conversation-id={conversation}]"
    entry = _wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, queued))
    assert "low_rating" in entry.text
    entry.click()
    _wait(browser).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=flag][data-reason=low_rating]")
    )
    page = browser.find_element(By.CSS_SELECTOR, "[data-testid=review-steps]").text
    assert email not in page and "[EMAIL_1]" in page  # shown as the scrub leaves it
    steps = browser.find_elements(By.CSS_SELECTOR, "[data-testid=step-assistant]")
    wrong = next(s for s in steps if s.text.split("\n")[1].startswith("search_policies("))
    index = wrong.get_attribute("data-index")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=step-tool]")  # the tool results are shown

    # the engineer corrects the step: the agent should have looked the account up
    wrong.find_element(By.CSS_SELECTOR, "[data-testid=correct]").click()
    Select(wrong.find_element(By.CSS_SELECTOR, "[data-testid=fix-action]")).select_by_value(
        "get_user_details"
    )
    wrong.find_element(By.CSS_SELECTOR, "[data-testid=fix-save]").click()
    row = f"[data-testid=step-assistant][data-index='{index}'] [data-testid=step-verdict]"
    verdict = _wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, row))
    assert "corrected to: get_user_details" in verdict.text and "by browser" in verdict.text
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=review-error]").text == ""

    # the export holds the correction as metadata and the scrubbed text
    engineer = {"Authorization": f"Bearer {keys['engineer']}"}
    exported = httpx.get(
        f"{base}/api/review/export", params={"reviewed": "true"}, headers=engineer, timeout=60
    )
    assert exported.status_code == 200, exported.text
    record = next(json.loads(line) for line in exported.text.splitlines() if conversation in line)
    assert email not in exported.text and "[EMAIL_1]" in record["messages"][1]["content"]
    correction = record["corrections"][0]
    assert correction["index"] == int(index) and correction["reviewer"] == "browser"
    assert correction["message"]["tool_calls"][0]["function"]["name"] == "get_user_details"
    assert record["metadata"]["ratings"][0]["value"] == "down"

    # `finetune dpo` on the export (two steps on the real base model) trains, and its lineage names the export
    export = tmp_path / "live.jsonl"
    export.write_text(exported.text)
    runs = SITE["settings"].finetune.runs_dir
    mix = f"[{{path: {export}, weight: 1}}]"
    config = tiny_config(tmp_path / "ds", runs, run_name="live-dpo", max_length=512, mix=mix)
    result = train_dpo(config)
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((result.run_dir / "metrics.json").read_text())["pairs"] >= 1
    lineage = json.loads((result.run_dir / "data.json").read_text())["live"][0]
    assert lineage["sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert lineage["conversations"] == 1 and lineage["corrections"] == 1 and lineage["first"]
    assert live_data(result.run_dir)["corrections"] == 1

    # the models page shows how much live data the run learned from
    browser.get("about:blank")
    browser.get(f"{base}/models#key={keys['engineer']}")
    learned = "[data-testid=run][data-run-id=live-dpo] [data-testid=live-data]"
    shown = _wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, learned))
    assert "1 live conversation" in shown.text and lineage["sha256"][:12] in shown.text
