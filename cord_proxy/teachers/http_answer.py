"""An HTTP/1.x answer read as it arrives: its head, then its body by the head's framing
(``Content-Length``, chunks, or the end of the connection), for plain_http.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD_BYTES = 65536  # a status line and headers longer than this are refused
NO_BODY = (204, 304)


class BadAnswer(Exception):
    """The server answered something this client does not read as HTTP/1.x."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header's last value
    body: bytes


class Reading:
    """An answer read as it arrives: its head, then its body by the head's framing."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.version = ""
        self.headers: dict[str, str] = {}
        self.length: int | None = None  # body bytes still expected (framed by length)
        self.chunked = False
        self.until_close = False
        self.parts: list[bytes] = []
        self.left_over = False

    def feed(self, data: bytes) -> bool:
        """Take `data`; True once the answer is complete."""
        self.buffer += data
        while not self.status:
            if not self._head():
                return False
        if self.until_close:
            self.parts.append(bytes(self.buffer))
            self.buffer.clear()
            return False
        return self._chunks() if self.chunked else self._sized()

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, b"".join(self.parts))

    def keeps_alive(self) -> bool:
        if "connection" not in self.headers:
            return self.version == "1.1"
        tokens = {t.strip().lower() for t in self.headers["connection"].split(",")}
        if self.version == "1.1":
            return "close" not in tokens
        return "keep-alive" in tokens

    def _head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise BadAnswer("an answer's head is too long")
            return False
        head = self.buffer[: end + 2].decode("latin-1")
        del self.buffer[: end + 4]
        status_line, _, header_lines = head.partition("\r\n")
        status, version = _status_line(status_line)
        if 100 <= status < 200:
            return True  # an informational head: the answer follows
        self.status, self.version, self.headers = status, version, _headers(header_lines)
        self._framing()
        return True

    def _framing(self) -> None:
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise BadAnswer(f"an answer encoded as {encoding!r}, where identity was asked")
        coding = self.headers.get("transfer-encoding", "").strip().lower()
        if self.status in NO_BODY:
            self.length = 0
        elif coding:
            if coding.split(",")[-1].strip() != "chunked":
                raise BadAnswer(f"an answer with transfer-encoding {coding!r}")
            self.chunked = True
        elif "content-length" in self.headers:
            self.length = _length(self.headers["content-length"])
        else:
            self.until_close = True

    def _sized(self) -> bool:
        assert self.length is not None
        if len(self.buffer) < self.length:
            return False
        self.parts.append(bytes(self.buffer[: self.length]))
        self.left_over = len(self.buffer) > self.length
        self.buffer.clear()
        return True

    def _chunks(self) -> bool:
        """Take the whole chunks buffered; True after the last chunk and its trailers."""
        at, done = 0, False
        while True:
            line_end = self.buffer.find(b"\r\n", at)
            if line_end < 0:
                break
            size = _chunk_size(bytes(self.buffer[at:line_end]))
            if size == 0:
                trailers_end = self.buffer.find(b"\r\n\r\n", line_end)
                if trailers_end >= 0:
                    self.left_over = len(self.buffer) > trailers_end + 4
                    at, done = len(self.buffer), True
                break
            start, end = line_end + 2, line_end + 2 + size
            if len(self.buffer) < end + 2:
                break
            if self.buffer[end : end + 2] != b"\r\n":
                raise BadAnswer("a chunk does not end where its size says")
            self.parts.append(bytes(self.buffer[start:end]))
            at = end + 2
        del self.buffer[:at]
        return done


def _status_line(line: str) -> tuple[int, str]:
    found = _STATUS.match(line)
    if found is None:
        raise BadAnswer(f"an answer that is not HTTP/1.x: {line[:40]!r}")
    return int(found[2]), found[1]


def _headers(lines: str) -> dict[str, str]:
    """Header lines, each ending with CRLF, by lower-case name (a repeated one's last). The
    block is checked by one match, then split (a match object per line cost twice as much)."""
    if _HEADERS.fullmatch(lines) is None:
        bad = next((line for line in lines.split("\r\n") if not _HEADER.fullmatch(line)), lines)
        raise BadAnswer(f"a header line that cannot be read: {bad[:40]!r}")
    headers: dict[str, str] = {}
    for line in lines.split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip(" \t")
    return headers


def _length(value: str) -> int:
    if not value.isdigit():  # the usual case is one number; a list must repeat one
        values = {v.strip() for v in value.split(",")}
        if len(values) != 1:
            raise BadAnswer(f"an answer with content-length {value!r}")
        value = values.pop()
    if not _DIGITS.fullmatch(value):
        raise BadAnswer(f"an answer with content-length {value!r}")
    return int(value)


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not _HEX.fullmatch(size):
        raise BadAnswer(f"a chunk size that is not hexadecimal: {line[:20]!r}")
    return int(size, 16)


_DIGITS = re.compile(r"[0-9]+")
_STATUS = re.compile(r"HTTP/(1\.[01]) ([0-9]{3})(?: |$)")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*")
_HEADERS = re.compile(rf"(?:{_HEADER.pattern}\r\n)*")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
