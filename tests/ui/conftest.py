from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from tests.ui.browser import chromium_context


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserContext]:
    """One headless Debian Chromium for the UI tests (a fresh page per test)."""
    with chromium_context() as context:
        yield context
