from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from cord_proxy.testing.browser import chromium_context


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """One headless Debian Chromium per module, a fresh page per test.

    Sync Playwright runs an event loop of its own while it is open: closing it with the
    module keeps it away from the async tests of other modules.
    """
    with chromium_context() as context:
        yield context
