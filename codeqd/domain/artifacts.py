"""Inline artifacts: content a worker sends with its result (``contentBase64``).

They are kept in the store next to the result, written by the same script that
accepts the result (so a refused result leaves nothing behind), served back by
any codeqd of the store at a URL of the task, and removed with the task. A
download is an attachment that a browser neither renders nor sniffs (the
worker's Content-Type is only a label); a link artifact is an http(s) URL.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from codeqd.domain.errors import ValidationError

_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;.{0,200})?$")
_NAME = re.compile(r"^[0-9a-f]{16}-[0-9]{1,3}$")


@dataclass(frozen=True)
class Inline:
    """A validated inline artifact, not yet stored."""

    name: str
    content: bytes
    content_type: str


def parse_inline(item: dict[str, Any], where: str, max_bytes: int) -> Inline:
    raw = item.get("contentBase64")
    if not isinstance(raw, str):
        raise ValidationError(f"{where}.contentBase64", "expected a base64 string")
    too_large = f"content larger than limits.artifact_bytes ({max_bytes} bytes)"
    if len(raw) > (max_bytes + 2) // 3 * 4 + 4:
        raise ValidationError(f"{where}.contentBase64", too_large)
    try:
        content = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{where}.contentBase64", "not valid base64") from None
    if len(content) > max_bytes:
        raise ValidationError(f"{where}.contentBase64", too_large)
    ctype = item.get("contentType", "application/octet-stream")
    if not isinstance(ctype, str) or not _CONTENT_TYPE.match(ctype):
        raise ValidationError(f"{where}.contentType", "expected a media type like 'text/plain'")
    return Inline(str(item["name"]), content, ctype)


def to_store(
    task_id: str, prefix: str, artifacts: list[dict[str, Any] | Inline]
) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]]]:
    """The result's wire artifacts (inline ones as URLs of the task) and the inline
    contents to store, by stored name (``<token>-<index>``: a fresh token per report)."""
    wire: list[dict[str, Any]] = []
    inline: list[tuple[str, bytes]] = []
    token = ""
    for i, a in enumerate(artifacts):
        if not isinstance(a, Inline):
            wire.append(a)
            continue
        token = token or secrets.token_hex(8)
        name = f"{token}-{i}"
        inline.append((name, a.content))
        wire.append(
            {
                "name": a.name,
                "url": f"{prefix}/tasks/{task_id}/artifacts/{name}",
                "contentType": a.content_type,
                "size": len(a.content),
            }
        )
    return wire, inline


def is_stored_name(name: str) -> bool:
    return bool(_NAME.match(name))


def check_link_url(url: str, where: str) -> None:
    """A link artifact's URL: absolute http or https with a host; nothing a browser
    would run or open locally (``javascript:``, ``data:``, ``file:``...)."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValidationError(where, "expected an absolute http:// or https:// URL")


_UNSAFE_FILENAME = re.compile(r'[^\x20-\x7e]|["\\/;%]')


def download_headers(name: str) -> dict[str, str]:
    """Headers for serving an inline artifact: a download (RFC 6266, with an ASCII
    ``filename`` fallback and the exact name in ``filename*``), never sniffed, and
    sandboxed with no sources should a browser render it anyway."""
    fallback = _UNSAFE_FILENAME.sub("_", name).strip() or "artifact"
    exact = quote(name, safe="!#$&+-.^_`|~")
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
