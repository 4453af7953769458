"""A real browser for the tests: Debian's Chromium (installed by .ci/run) driven by Playwright.

Playwright's own browser download cannot be reached here, so it launches /usr/bin/chromium. The flags keep
Chromium off the network it has no business with (background services, updates, sync): on a closed network
their refused connections would otherwise show up as errors. Playwright gives every launch a fresh profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no {CHROMIUM}: `apt-get install chromium` (.ci/run installs it)"
)


@dataclass
class BrowserLog:
    """What the page reported: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error.message}")


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[tuple[Page, BrowserLog]]:
    """A page in headless Chromium, and the log of the errors it reports."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            log = BrowserLog()
            page.on("console", log.on_console)
            page.on("pageerror", log.on_page_error)
            yield page, log
        finally:
            browser.close()


def screenshot(page: Page, path: Path) -> Path:
    """A full-page PNG, its path printed so that a person can look at it after the run."""
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
