"""Files on disk: uploads streamed in under a size limit, outputs written whole.

A file's path is made from the id the proxy gave it, never from a name a client sent, so
nothing is written outside the data directory whatever the upload says.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import BodyPartReader, MultipartReader, web

from cord_proxy.errors import InvalidRequestError, RequestTooLargeError

FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
PURPOSES = ("batch",)
CHUNK = 1 << 16
FIELD_LIMIT = 4096
MAX_FILENAME = 255


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    """A file's metadata as the OpenAI File object."""
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "expires_at": None,
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "status_details": None,
    }


def clean_filename(name: str | None) -> str:
    """The last part of a client's file name, printable, at most 255 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return base[:MAX_FILENAME] if base not in ("", ".", "..") else "upload.jsonl"


class FileArea:
    """The folder that holds every file's bytes, under the data directory."""

    def __init__(self, data_dir: Path):
        self.folder = data_dir / "files"

    def path(self, file_id: str) -> Path:
        if not FILE_ID.match(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.folder / file_id

    def open_temporary(self) -> tuple[Path, BinaryIO]:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f".upload-{secrets.token_hex(8)}"
        return path, path.open("xb")

    def write(self, file_id: str, lines: list[str]) -> int:
        """Write a whole file (one line each) atomically; its size in bytes."""
        temporary, out = self.open_temporary()
        with out:
            for line in lines:
                out.write(line.encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        os.replace(temporary, self.path(file_id))
        return size

    def remove(self, file_id: str) -> None:
        self.path(file_id).unlink(missing_ok=True)


@dataclass
class Upload:
    file_id: str
    filename: str
    purpose: str
    bytes: int

    def row(self, owner: str) -> dict[str, Any]:
        return {
            "id": self.file_id,
            "owner": owner,
            "filename": self.filename,
            "purpose": self.purpose,
            "bytes": self.bytes,
            "created_at": int(time.time()),
        }


async def receive_upload(request: web.Request, area: FileArea, limit: int) -> Upload:
    """Read a ``multipart/form-data`` upload (``file`` and ``purpose``) into the area."""
    if request.content_type != "multipart/form-data":
        raise InvalidRequestError("upload a file as multipart/form-data with 'file' and 'purpose'")
    if request.content_length is not None and request.content_length > limit + 65536:
        raise RequestTooLargeError(f"the file is over the upload limit of {limit} bytes")
    reader = await request.multipart()
    purpose: str | None = None
    upload: tuple[Path, str, int] | None = None
    try:
        while (part := await reader.next()) is not None:
            if isinstance(part, MultipartReader):
                raise InvalidRequestError("nested multipart bodies are not accepted")
            if part.name == "file" and upload is None:
                upload = await _store_part(part, area, limit)
            elif part.name == "file":
                raise InvalidRequestError("give one 'file'", param="file")
            else:
                value = (await _read_field(part)).decode("utf-8", "replace")
                purpose = value.strip() if part.name == "purpose" else purpose
        return _finished(upload, purpose, area)
    except BaseException:
        if upload is not None:
            upload[0].unlink(missing_ok=True)
        raise


def _finished(upload: tuple[Path, str, int] | None, purpose: str | None, area: FileArea) -> Upload:
    if upload is None:
        raise InvalidRequestError("the upload has no 'file' part", param="file")
    if purpose not in PURPOSES:
        raise InvalidRequestError(
            f"'purpose' must be one of: {', '.join(PURPOSES)}", param="purpose"
        )
    temporary, filename, size = upload
    file_id = new_file_id()
    os.replace(temporary, area.path(file_id))
    return Upload(file_id, filename, purpose, size)


async def _read_field(part: BodyPartReader) -> bytes:
    data = b""
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > FIELD_LIMIT:
            raise InvalidRequestError(f"form field '{part.name}' is too long", param=part.name)
    return data


async def _store_part(part: BodyPartReader, area: FileArea, limit: int) -> tuple[Path, str, int]:
    """Stream the file part to a temporary file in the area; over `limit` is a 413."""
    temporary, out = await asyncio.to_thread(area.open_temporary)
    size = 0
    try:
        with out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise RequestTooLargeError(
                        f"the file is over the upload limit of {limit} bytes", param="file"
                    )
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary, clean_filename(part.filename), size
