"""Where each key of a TOML text is written, which ``tomllib`` does not report.

The scenario parser names the line of every value it refuses; this finds it
by scanning the text once. It only ever sees text ``tomllib`` has already
accepted, so it skips values without checking them.
"""

from __future__ import annotations

import tomllib

KeyPath = tuple[str | int, ...]
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class KeyLines:
    """Line numbers (from 1) of keys and table headers, by their path in the parsed data.

    ``("fleet", "devices")`` is the line of ``devices = ...`` under ``[fleet]``;
    ``("event", 1)`` the second ``[[event]]`` header and ``("event", 1, "at")``
    its ``at``. A key written inside an inline table or array has no line of
    its own: :meth:`find` falls back to the key that holds it.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        self._array_index: dict[KeyPath, int] = {}
        self._scan(text)

    def find(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest written ancestor; None if none is."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None

    def _scan(self, text: str) -> None:
        table: KeyPath = ()
        pos = _skip_blank(text, 0)
        while pos < len(text):
            line = text.count("\n", 0, pos) + 1
            if text[pos] == "[":
                is_array = text.startswith("[[", pos)
                keys, pos = _read_key(text, pos + (2 if is_array else 1))
                table = self._table(keys, is_array=is_array)
                self._record(table, line, depth=0)
                pos = text.index("]", pos) + (2 if is_array else 1)
            else:
                keys, pos = _read_key(text, pos)
                self._record(table + keys, line, depth=len(table))
                pos = _skip_value(text, text.index("=", pos) + 1)
            pos = _skip_blank(text, pos)

    def _record(self, path: KeyPath, line: int, *, depth: int) -> None:
        """``path`` is on ``line``; so are the parents a dotted key or header defines implicitly."""
        self._lines[path] = line
        for end in range(depth + 1, len(path)):
            self._lines.setdefault(path[:end], line)

    def _table(self, keys: tuple[str, ...], *, is_array: bool) -> KeyPath:
        """The data path of a header: an array of tables' element is named by its index."""
        path: KeyPath = ()
        for i, key in enumerate(keys):
            path += (key,)
            if is_array and i == len(keys) - 1:
                index = self._array_index.get(path, -1) + 1
                self._array_index[path] = index
                path += (index,)
            elif path in self._array_index:
                path += (self._array_index[path],)
        return path


def _skip_blank(text: str, pos: int) -> int:
    while pos < len(text):
        if text[pos] in " \t\r\n":
            pos += 1
        elif text[pos] == "#":
            pos = _line_end(text, pos)
        else:
            break
    return pos


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end == -1 else end


def _skip_spaces(text: str, pos: int) -> int:
    while text[pos] in " \t":
        pos += 1
    return pos


def _read_key(text: str, pos: int) -> tuple[tuple[str, ...], int]:
    """A dotted key starting at ``pos``, its parts unquoted, and where it ends."""
    keys: list[str] = []
    while True:
        pos = _skip_spaces(text, pos)
        if text[pos] in "\"'":
            end = _string_end(text, pos)
            keys.append(tomllib.loads(f"k = {text[pos:end]}")["k"])
        else:
            end = pos
            while text[end] in _BARE:
                end += 1
            keys.append(text[pos:end])
        pos = _skip_spaces(text, end)
        if text[pos] != ".":
            return tuple(keys), pos
        pos += 1


def _string_end(text: str, pos: int) -> int:
    """The end of the single-line string that opens at ``pos``."""
    if text[pos] == "'":
        return text.index("'", pos + 1) + 1
    pos += 1
    while text[pos] != '"':
        pos += 2 if text[pos] == "\\" else 1
    return pos + 1


def _multiline_end(text: str, pos: int) -> int:
    """The end of the multi-line string that opens at ``pos``.

    Its closing delimiter may carry up to two more quotes, which belong to the content.
    """
    quote = text[pos : pos + 3]
    pos += 3
    while not text.startswith(quote, pos):
        pos += 2 if quote == '"""' and text[pos] == "\\" else 1
    end = pos + 3
    while end < len(text) and end - pos < 5 and text[end] == quote[0]:
        end += 1
    return end


def _skip_value(text: str, pos: int) -> int:
    """The end of the line where the value starting at ``pos`` ends (arrays may span lines)."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if text.startswith(('"""', "'''"), pos):
            pos = _multiline_end(text, pos)
            continue
        if char in "\"'":
            pos = _string_end(text, pos)
            continue
        if char == "#":
            pos = _line_end(text, pos)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "\n" and depth == 0:
            return pos
        pos += 1
    return pos
