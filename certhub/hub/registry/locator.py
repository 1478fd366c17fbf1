"""Line numbers for values of a TOML text that tomllib has accepted.

tomllib reports positions only for syntax errors; the validator names every problem's line,
so it asks ``Locator`` where a value path (``departments[2].keys[0].status``) is written.
"""

from __future__ import annotations

import re

__all__ = ["Locator", "join_path"]


def join_path(path: str, key: str) -> str:
    """``key`` inside the table at ``path`` (the document itself when ``path`` is empty)."""
    return f"{path}.{key}" if path else key


_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_PARENT = re.compile(r"(?:\.[^.\[\]]+|\[\d+\])$")


class Locator:
    """Maps value paths (``departments[2].keys[0].status``) to 1-based line numbers.

    tomllib reports positions only for syntax errors, so this re-reads text that tomllib
    has already accepted with a small scanner of the same grammar: headers, keys, strings
    (so that a ``[[x]]`` inside a multi-line string is not a header), arrays and inline
    tables. It only needs to be right for valid TOML, and a path it does not know falls back
    to its closest ancestor (the key, then the table header).
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1
        self._lines: dict[str, int] = {}
        self._array_tables: dict[str, int] = {}
        self._scan()

    def line(self, path: str) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            parent = _PARENT.sub("", path)
            if parent == path:
                return None
            path = parent
        return None

    # -- scanning ----------------------------------------------------------------------

    def _peek(self, offset: int = 0) -> str:
        index = self._pos + offset
        return self._text[index] if index < len(self._text) else ""

    def _advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self._pos < len(self._text) and self._text[self._pos] == "\n":
                self._line += 1
            self._pos += 1

    def _record(self, path: str) -> None:
        self._lines.setdefault(path, self._line)

    def _skip_space(self, *, newlines: bool) -> None:
        while self._pos < len(self._text):
            c = self._text[self._pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._advance()
            elif c == "#":
                while self._pos < len(self._text) and self._text[self._pos] != "\n":
                    self._pos += 1
            else:
                return

    def _scan(self) -> None:
        table = ""
        while True:
            self._skip_space(newlines=True)
            if self._pos >= len(self._text):
                return
            if self._text.startswith("[[", self._pos):
                self._advance(2)
                table = self._header(self._key_parts(), array=True)
                self._skip_to_line_end()
            elif self._peek() == "[":
                self._advance()
                table = self._header(self._key_parts(), array=False)
                self._skip_to_line_end()
            else:
                self._key_value(table)

    def _skip_to_line_end(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos] != "\n":
            self._pos += 1

    def _resolve(self, parts: list[str]) -> str:
        path = ""
        for part in parts:
            path = join_path(path, part)
            count = self._array_tables.get(path)
            if count is not None:
                path = f"{path}[{count - 1}]"
        return path

    def _header(self, parts: list[str], *, array: bool) -> str:
        if not parts:
            return ""
        if array:
            parent = self._resolve(parts[:-1])
            base = join_path(parent, parts[-1])
            count = self._array_tables.get(base, 0) + 1
            self._array_tables[base] = count
            self._record(base)
            path = f"{base}[{count - 1}]"
        else:
            path = self._resolve(parts)
        self._record(path)
        return path

    def _key_parts(self) -> list[str]:
        parts: list[str] = []
        while self._pos < len(self._text):
            self._skip_space(newlines=False)
            c = self._peek()
            if c in "\"'":
                parts.append(self._string())
            else:
                start = self._pos
                while self._pos < len(self._text) and self._text[self._pos] in _BARE_KEY_CHARS:
                    self._pos += 1
                if self._pos == start:
                    return parts
                parts.append(self._text[start : self._pos])
            self._skip_space(newlines=False)
            if self._peek() != ".":
                return parts
            self._advance()
        return parts

    def _key_value(self, table: str) -> None:
        line = self._line
        parts = self._key_parts()
        path = table
        for part in parts:
            path = join_path(path, part)
            self._lines.setdefault(path, line)
        self._skip_space(newlines=False)
        if self._peek() != "=":
            # Not valid TOML after all; stop rather than guess.
            self._pos = len(self._text)
            return
        self._advance()
        self._skip_space(newlines=False)
        self._value(path)

    def _value(self, path: str) -> None:
        c = self._peek()
        if c in "\"'":
            self._string()
        elif c == "[":
            self._advance()
            index = 0
            while True:
                self._skip_space(newlines=True)
                if self._peek() in ("]", ""):
                    self._advance()
                    return
                element = f"{path}[{index}]"
                self._record(element)
                start = self._pos
                self._value(element)
                index += 1
                self._skip_space(newlines=True)
                if self._peek() == ",":
                    self._advance()
                elif self._pos == start:
                    self._advance()  # not TOML after all: move on rather than loop
        elif c == "{":
            self._advance()
            while True:
                self._skip_space(newlines=False)
                if self._peek() in ("}", ""):
                    self._advance()
                    return
                self._key_value(path)
                self._skip_space(newlines=False)
                if self._peek() == ",":
                    self._advance()
        else:
            while self._pos < len(self._text) and self._text[self._pos] not in ",]}\n#":
                self._pos += 1

    def _string(self) -> str:
        """Consume a string of any of the four kinds; return its raw contents."""
        quote = self._peek()
        multi = self._text.startswith(quote * 3, self._pos)
        delimiter = quote * 3 if multi else quote
        self._advance(len(delimiter))
        start = self._pos
        while self._pos < len(self._text):
            if quote == '"' and self._text[self._pos] == "\\":
                self._advance(2)
                continue
            if self._text.startswith(delimiter, self._pos):
                # A multi-line string may end with up to two extra quotes before the
                # closing delimiter ("""a"""" is 'a"').
                while multi and self._text.startswith(delimiter + quote, self._pos):
                    self._advance()
                end = self._pos
                self._advance(len(delimiter))
                return self._text[start:end]
            self._advance()
        return self._text[start:]
