"""Inline artifacts: content a worker sends with its result (``contentBase64``), kept
on disk under ``tasks.artifacts_dir`` and served back by codeqd at a URL of the task.

Files are named per request (a random token), so a refused result removes only its
own files and never those of the result that was accepted. The janitor removes a
task's directory when it removes the task.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from codeqd.config import Config
from codeqd.domain.errors import TaskNotFound, ValidationError
from codeqd.domain.ids import is_task_id
from codeqd.store._keys import escape_tenant

_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;.{0,200})?$")
_FILE = re.compile(r"^[0-9a-f]{16}-[0-9]{1,3}$")


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
    if len(raw) > (max_bytes + 2) // 3 * 4 + 4:
        raise ValidationError(
            f"{where}.contentBase64",
            f"content larger than limits.artifact_bytes ({max_bytes} bytes)",
        )
    try:
        content = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{where}.contentBase64", "not valid base64") from None
    if len(content) > max_bytes:
        raise ValidationError(
            f"{where}.contentBase64",
            f"content larger than limits.artifact_bytes ({max_bytes} bytes)",
        )
    ctype = item.get("contentType", "application/octet-stream")
    if not isinstance(ctype, str) or not _CONTENT_TYPE.match(ctype):
        raise ValidationError(f"{where}.contentType", "expected a media type like 'text/plain'")
    return Inline(str(item["name"]), content, ctype)


class ArtifactFiles:
    """The artifacts directory: ``<root>/<tenant>/<task id>/<token>-<index>``."""

    def __init__(self, config: Config) -> None:
        root = config.tasks.artifacts_dir or str(config.state_path / "artifacts")
        self.root = Path(root).absolute()

    def _dir(self, tenant: str, task_id: str) -> Path:
        if not is_task_id(task_id):  # never a path from an id that cannot be a task
            raise TaskNotFound(task_id)
        return self.root / _tenant_dir(escape_tenant(tenant)) / task_id

    async def store(
        self, tenant: str, task_id: str, prefix: str, artifacts: list[dict[str, Any] | Inline]
    ) -> tuple[list[dict[str, Any]], list[Path]]:
        """Write the inline artifacts; returns the wire artifacts (URLs) and the files."""
        links = [a for a in artifacts if not isinstance(a, Inline)]
        if len(links) == len(artifacts):
            return links, []  # links only (or none): nothing to write
        token = secrets.token_hex(8)
        wire: list[dict[str, Any]] = []
        written: list[Path] = []
        for i, a in enumerate(artifacts):
            if not isinstance(a, Inline):
                wire.append(a)
                continue
            name = f"{token}-{i}"
            path = self._dir(tenant, task_id) / name
            await trio.to_thread.run_sync(_write, path, a.content)
            written.append(path)
            wire.append(
                {
                    "name": a.name,
                    "url": f"{prefix}/tasks/{task_id}/artifacts/{name}",
                    "contentType": a.content_type,
                    "size": len(a.content),
                }
            )
        return wire, written

    async def discard(self, files: list[Path]) -> None:
        for path in files:
            await trio.to_thread.run_sync(_unlink, path)

    async def read(self, tenant: str, task_id: str, name: str) -> bytes | None:
        if not _FILE.match(name):
            return None
        path = self._dir(tenant, task_id) / name
        try:
            return await trio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            return None

    async def remove_task(self, escaped_tenant: str, task_id: str) -> None:
        if not is_task_id(task_id):
            return
        path = self.root / _tenant_dir(escaped_tenant) / task_id
        if path.exists():
            await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))


def _tenant_dir(escaped: str) -> str:
    """A directory name for an escaped tenant: ``.`` and ``..`` (and other dot names) get
    the ``~`` mark, which no plain escaped tenant starts with, so no tenant leaves the root."""
    return "~" + escaped if escaped.startswith(".") else escaped


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
