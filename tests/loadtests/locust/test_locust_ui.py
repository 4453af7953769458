"""`make locust-ui` as a person uses it: its Locust (the Makefile's own command line, on a free port) against
a small real stack, driven from headless Chromium (tests/browser.py): fill the start form, click START, and
watch the request count of the statistics table rise. A screenshot of the form and of the running swarm are
kept in the test's folder (paths printed: `pytest -s`)."""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from loadtests.stack.embedded_stack import EmbeddedStack
from loadtests.stack.services import ManagedProcess, free_port
from tests.browser import chromium_page, requires_chromium, screenshot

pytestmark = requires_chromium
ROOT = Path(__file__).resolve().parents[3]
RISE_TIMEOUT_S = 90.0  # a bound against a hang only: the count rises within seconds

# A column of the statistics table's "Aggregated" row, as a number ("# Requests", "# Fails").
AGGREGATED_JS = """(name) => {
  const table = [...document.querySelectorAll('table')].find(t => t.innerText.includes('Aggregated'));
  if (!table) return null;
  const headers = [...table.querySelectorAll('thead th')]
    .map(th => th.innerText.replace(/\\s+/g, ' ').trim());
  const column = headers.indexOf(name);
  const row = [...table.querySelectorAll('tbody tr')].find(tr => tr.innerText.includes('Aggregated'));
  if (column < 0 || !row) return null;
  return Number(row.children[column].innerText.replace(/[^0-9]/g, ''));
}"""


def locust_ui_command(web_port: int) -> list[str]:
    """The Makefile's `locust-ui` recipe, run with this interpreter and on `web_port` instead of 8089."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^locust-ui:.*\n\t(.+)$", makefile, flags=re.MULTILINE)
    assert recipe, "no locust-ui target in the Makefile"
    argv = shlex.split(recipe.group(1))
    assert argv[0] == "$(BIN)/locust", argv
    assert (ROOT / argv[argv.index("-f") + 1]).is_file(), argv
    argv[argv.index("--web-port") + 1] = str(web_port)
    return [sys.executable, "-m", "locust", *argv[1:]]


@pytest.fixture
def locust_ui(small_stack: EmbeddedStack, tmp_path: Path) -> Iterator[str]:
    """The web UI's URL; each user class targets the small stack's API or baseline, as with `ragload up`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "locust-ui",
        locust_ui_command(port),
        env={
            "RAGLOAD_API_URL": small_stack.urls["api"],
            "RAGLOAD_BASELINE_URL": small_stack.urls["baseline"],
            "RAGLOAD_DEADLINE_S": "10",
        },
        ready_url=f"{url}/",
        log_path=tmp_path / "locust-ui.log",
    ).start()
    try:
        process.wait_ready()
        yield url
    finally:
        process.stop()


def aggregated(page: Page, column: str = "# Requests") -> int | None:
    value = page.evaluate(AGGREGATED_JS, column)
    return None if value is None else int(value)


def wait_for_requests_above(page: Page, floor: int) -> int:
    deadline = time.monotonic() + RISE_TIMEOUT_S
    while time.monotonic() < deadline:
        count = aggregated(page)
        if count is not None and count > floor:
            return count
        page.wait_for_timeout(250)
    raise AssertionError(f"the UI's request count stayed at {aggregated(page)} (floor {floor})")


def test_a_swarm_started_from_the_page_shows_a_rising_request_count(
    locust_ui: str, small_stack: EmbeddedStack, tmp_path: Path
) -> None:
    with chromium_page() as (page, log):
        page.goto(locust_ui, wait_until="networkidle")
        page.get_by_label(re.compile("Number of users")).fill("3")
        page.get_by_label(re.compile("Ramp up")).fill("3")
        form = screenshot(page, tmp_path / "locust-ui-form.png")
        page.get_by_role("button", name="START").click()

        first = wait_for_requests_above(page, 0)
        later = wait_for_requests_above(page, first)
        running = screenshot(page, tmp_path / "locust-ui-running.png")
        header = page.locator("header").inner_text()
        failures = aggregated(page, "# Fails")
        page.get_by_role("button", name="STOP").click()

    assert later > first > 0
    assert failures == 0  # the users reached the stack's API and baseline (RAGLOAD_*_URL), not :8000/:8001
    assert "RUNNING" in header.upper() or "SPAWNING" in header.upper(), header
    assert log.errors == []
    assert form.stat().st_size > 10_000 and running.stat().st_size > 10_000
