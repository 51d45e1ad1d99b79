"""With `[server] api_keys`: the page without a key shows only the key prompt; with it, works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Request, Response

from cord_proxy.testing.browser import watched_page
from tests.support.proxy_process import ProxyProcess
from tests.ui.configs import two_teachers

KEY = "sk-ui-test-key-0123"
TEACHER_SECRET = "sk-teacher-secret-never-shown"


@pytest.fixture(scope="module")
def keyed_proxy(
    local_teacher: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    workdir: Path = tmp_path_factory.mktemp("ui-keys")
    sink = workdir / "sink.jsonl"
    sink.write_text("", encoding="utf-8")
    config = (
        two_teachers(
            local_teacher,
            server='api_keys = ["env:CORD_UI_KEY"]',
            teacher='api_key = "env:CORD_UI_TEACHER_KEY"',
        )
        + f'\n[dataset]\npath = "{sink}"\n'
    )
    env = {"CORD_UI_KEY": KEY, "CORD_UI_TEACHER_KEY": TEACHER_SECRET}
    proxy = ProxyProcess(config, workdir, env=env).start()
    yield proxy
    proxy.stop()


def test_apis_refuse_a_missing_or_wrong_key(keyed_proxy: ProxyProcess) -> None:
    base = f"http://127.0.0.1:{keyed_proxy.port}"
    paths = ("info", "traces", "traces/0", "traces/0/pairs", "stats", "teachers")
    for path in (f"/ui/api/{name}" for name in paths):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = httpx.get(base + path, headers=headers, timeout=10)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["type"] == "authentication_error"
    assert httpx.get(base + "/ui/api/auth", timeout=10).json() == {
        "auth_required": True,
        "authorized": False,
    }


def test_page_asks_for_the_key_then_works(
    keyed_proxy: ProxyProcess, browser: BrowserContext
) -> None:
    watch = watched_page(browser)
    page = watch.page
    requests: list[Request] = []
    responses: list[Response] = []
    page.on("request", lambda r: requests.append(r))
    page.on("response", lambda r: responses.append(r) if "/ui/api/" in r.url else None)
    page.goto(f"http://127.0.0.1:{keyed_proxy.port}/ui#teachers")
    page.wait_for_selector("#key-prompt:not([hidden])")
    assert not page.is_visible("#app")
    assert page.locator("#tc-rows tr, #tr-rows tr, #pg-ensemble option").count() == 0
    api_calls = [r.url for r in requests if "/ui/api/" in r.url or "/v1/" in r.url]
    assert api_calls and all(u.endswith("/ui/api/auth") for u in api_calls)

    page.fill("#key-input", "wrong-key")
    page.click("#key-submit")
    page.wait_for_selector("#key-error:has-text('not accepted')")
    assert not page.is_visible("#app")

    page.fill("#key-input", KEY)
    page.click("#key-submit")
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_selector("#tc-rows tr[data-teacher='gemma-t0.5'][data-ready='true']")
    assert not page.is_visible("#key-prompt")
    data_calls = [r for r in requests if "/ui/api/" in r.url and not r.url.endswith("/auth")]
    assert data_calls and all(r.headers.get("authorization") == f"Bearer {KEY}" for r in data_calls)

    page.click("#nav-playground")
    page.wait_for_selector("#pg-ensemble option[value='cord']", state="attached")
    page.click("#nav-traces")
    page.wait_for_selector("#tr-count[data-matched='0']", state="attached")
    seen = page.content() + "".join(r.text() for r in responses)
    assert TEACHER_SECRET not in seen and KEY not in seen
    watch.assert_clean()
    page.close()
