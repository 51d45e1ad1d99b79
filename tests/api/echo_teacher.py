"""A FAKE teacher that fails every call and quotes what it was sent: its Authorization
header, its key alone, the URL it was called on. A real teacher cannot be made to leak a key
on demand; the secrets test needs one that does."""

from __future__ import annotations

from aiohttp import web

from tests.support.threaded_server import ThreadedServer


class EchoAuthFakeTeacher(ThreadedServer):
    thread_name = "echo-teacher"

    def __init__(self, status: int = 500) -> None:
        super().__init__()
        self.status = status
        self.calls = 0

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._echo)
        return app

    async def _echo(self, request: web.Request) -> web.Response:
        self.calls += 1
        header = request.headers.get("Authorization", "")
        key = header.partition(" ")[2]
        text = (
            f'{{"error": {{"message": "rejected Authorization: {header} (key {key}) '
            f'at {request.url}", "key": "{key}"}}}}'
        )
        return web.Response(status=self.status, text=text, content_type="application/json")
