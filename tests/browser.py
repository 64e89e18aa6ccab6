"""Helpers for the tests that open the built site in headless Chromium (fixtures: conftest.py)."""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where the tests build the site (build/docs, public/): the repository, or ZOO_TEST_SITE, so that
# two test runs at once need not share one folder
SITE = Path(os.environ.get("ZOO_TEST_SITE") or ROOT)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no chromium on this machine: run 'make browser' (apt-get install chromium)",
                pytrace=False)


def open_page(browser, url, chart_ids):
    """A new page at ``url``, once the charts ``chart_ids`` are drawn; with the console errors
    and the requests it makes, as lists that keep filling."""
    page = browser.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    for cid in chart_ids:
        page.wait_for_selector(f"#{cid}[data-ready]", timeout=30_000)
    return page, errors, requests


def assert_offline(requests, base):
    outside = [u for u in requests if not u.startswith(base) and not u.startswith("data:")]
    assert outside == []
