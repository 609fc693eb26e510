"""`multipart/form-data` (what `client.files.create` sends), parsed exactly: a file's bytes are
kept as sent. Small on purpose: the data plane carries no form-parsing dependency."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ..errors import bad_request

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.I)
_DISPOSITION = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Part:
    name: str
    filename: Optional[str]
    data: bytes


def parse(content_type: Optional[str], body: bytes) -> dict[str, Part]:
    """The form's parts by name, or a 400."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise bad_request("upload the file as multipart/form-data with the fields purpose and file",
                          code="invalid_content_type")
    found = _BOUNDARY.search(content_type)
    if not found:
        raise bad_request("multipart/form-data without a boundary", code="invalid_multipart")
    delimiter = b"--" + (found.group(1) or found.group(2)).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise bad_request("the multipart body is incomplete", code="invalid_multipart")
    parts: dict[str, Part] = {}
    for chunk in chunks[1:-1]:
        head, sep, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise bad_request("a multipart part has no headers", code="invalid_multipart")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = dict(_DISPOSITION.findall(headers.get("content-disposition", "")))
        if "name" not in params:
            raise bad_request("a multipart part has no name", code="invalid_multipart")
        parts[params["name"]] = Part(params["name"], params.get("filename"), data.removesuffix(b"\r\n"))
    return parts
