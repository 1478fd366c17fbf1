"""`files` source: a folder of CSV or JSON Lines exports.

Each file is processed once, recognised by the SHA-256 of its content (a re-exported file
with a new name but the same bytes is not read again; a corrected file is). Rows are
streamed; a row that cannot be read (undecodable bytes, bad JSON, a missing key) is
reported with ``file:line`` and skipped, and the rest of the file goes through.

Encodings: UTF-8 with or without a byte-order mark, or GBK declared in the config (read
as GB 18030, its superset, so any GBK export decodes the same).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from certhub.adapters.config import FilesSourceConfig
from certhub.adapters.errors import SourceError
from certhub.adapters.records import Checkpoint, Problem, SourceItem, SourceRecord, StateView

__all__ = ["FILE_CHECKPOINT_PREFIX", "FilesSource"]

FILE_CHECKPOINT_PREFIX = "file.sha256:"
#: Read size for hashing: large enough to hash at disk speed, small enough to stay streamed.
_HASH_CHUNK = 1024 * 1024
#: CSV fields longer than Python's default (128 KiB) occur in exported scope texts only
#: by mistake; 8 MiB lets such a row be read (and rejected by the hub's own limits).
_CSV_FIELD_LIMIT = 8 * 1024 * 1024
_REPLACEMENT = "\ufffd"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FilesSource:
    def __init__(self, config: FilesSourceConfig) -> None:
        self._c = config
        csv.field_size_limit(_CSV_FIELD_LIMIT)

    @property
    def description(self) -> str:
        return f"files {self._c.path} ({', '.join(self._c.patterns)}, {self._c.encoding})"

    def close(self) -> None:
        """Nothing held open between reads."""

    def _files(self) -> list[Path]:
        if not self._c.path.is_dir():
            raise SourceError(f"{self.description}: {self._c.path} is not a directory")
        found = {p for pattern in self._c.patterns for p in self._c.path.glob(pattern)}
        return sorted(p for p in found if p.is_file())

    def _new_files(self, state: StateView) -> Iterator[tuple[Path, str]]:
        for path in self._files():
            digest = _sha256(path)
            if state.checkpoint(FILE_CHECKPOINT_PREFIX + digest) is None:
                yield path, digest

    def estimate(self, state: StateView) -> int | None:
        del state
        return None

    def read(self, state: StateView) -> Iterator[SourceItem]:
        for path, digest in self._new_files(state):
            try:
                with path.open(encoding=self._c.encoding, errors="replace", newline="") as f:
                    if path.suffix.lower() in {".jsonl", ".ndjson"}:
                        yield from self._jsonl(path, f)
                    else:
                        yield from self._csv(path, f)
            except OSError as exc:
                raise SourceError(f"{path}: cannot read ({exc.strerror})") from exc
            yield Checkpoint(name=FILE_CHECKPOINT_PREFIX + digest, value=path.name)

    def _csv(self, path: Path, f: IO[str]) -> Iterator[SourceItem]:
        reader = csv.reader(f, delimiter=self._c.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Problem(location=f"{path.name}:1", message=f"bad CSV header: {exc}")
            return
        header = [h.strip() for h in header]
        if _REPLACEMENT in "".join(header):
            yield Problem(
                location=f"{path.name}:1",
                message=f"header is not valid {self._encoding_name} (wrong encoding declared?)",
            )
            return
        line = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Problem(location=f"{path.name}:{line}", message=f"bad CSV: {exc}")
                line = reader.line_num + 1
                continue
            location = f"{path.name}:{line}"
            line = reader.line_num + 1
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield Problem(
                    location=location,
                    message=f"{len(row)} fields, the header has {len(header)}",
                )
                continue
            yield self._record(dict(zip(header, row, strict=True)), location)

    def _jsonl(self, path: Path, f: IO[str]) -> Iterator[SourceItem]:
        for number, raw in enumerate(f, start=1):
            location = f"{path.name}:{number}"
            text = raw.removeprefix("\ufeff") if number == 1 else raw
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield Problem(location=location, message=f"not valid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield Problem(location=location, message="a line must be a JSON object")
                continue
            yield self._record(value, location)

    @property
    def _encoding_name(self) -> str:
        return "GBK" if self._c.encoding == "gb18030" else "UTF-8"

    def _record(self, values: dict[str, object], location: str) -> SourceItem:
        c = self._c
        if any(isinstance(v, str) and _REPLACEMENT in v for v in values.values()):
            return Problem(
                location=location,
                message=f"bytes that are not valid {self._encoding_name} in this row",
            )
        key_values = [values.get(k) for k in c.key]
        if any(v is None or str(v).strip() == "" for v in key_values):
            missing = [k for k, v in zip(c.key, key_values, strict=True) if v in (None, "")]
            return Problem(location=location, message=f"key column(s) {missing} empty or missing")
        key = "|".join(str(v).strip() for v in key_values)
        if c.marker:
            marked: object = [values.get(m) for m in c.marker]
        else:
            marked = values
        marker = hashlib.sha256(
            json.dumps(marked, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()
        return SourceRecord(key=key, marker=marker, location=location, values=values)
