"""Raw-socket HTTP for tests that send what no HTTP client library will: bad bytes, half
requests, stalls."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int | None
    headers: dict[str, str]
    body: bytes
    closed: bool

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes, closed: bool) -> RawResponse:
    while raw.startswith(b"HTTP/1.1 100 "):  # an interim answer to Expect: 100-continue
        raw = raw.partition(b"\r\n\r\n")[2]
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return RawResponse(None, {}, raw, closed)
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, body, closed)


def exchange(
    port: int, data: bytes, timeout: float = 10.0, *, half_close: bool = False
) -> RawResponse:
    """Send `data`, then read until the server closes the connection (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock, timeout)


def read_all(sock: socket.socket, timeout: float) -> RawResponse:
    """Read until the peer closes, or until `timeout` passes (then `closed` is False)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return parse(b"".join(chunks), closed=False)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return parse(b"".join(chunks), closed=False)
        except ConnectionResetError:
            return parse(b"".join(chunks), closed=True)
        if not chunk:
            return parse(b"".join(chunks), closed=True)
        chunks.append(chunk)


def request_bytes(
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: dict[str, bytes] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    if method == "POST":
        lines += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
