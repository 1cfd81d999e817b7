"""Device-group selectors: the small language operators use to pick devices.

Operators type selectors in the CLI, the API and the dashboard, for example
``profile=rpi4 and site in (berlin, paris) and not tag:lab``. Everything here
is pure: :func:`parse_selector` turns text into an immutable AST, ``str()`` of
the AST is its one canonical spelling (what the API stores and shows, and
``parse_selector(str(s)) == s``), and :meth:`Selector.matches` evaluates it
against plain :class:`DeviceFacts`, so services, the rollout planner and tests
share one rule without a database. Grammar (keywords are case-insensitive;
keys, values, tags and labels are not)::

    selector  = or_expr ;
    or_expr   = and_expr { "or" and_expr } ;
    and_expr  = unary { "and" unary } ;
    unary     = "not" unary | atom ;
    atom      = "(" or_expr ")" | "all" | "tag:" value | "has" "(" key ")"
              | key ( "=" | "!=" ) value
              | key [ "not" ] "in" "(" value { "," value } ")" ;
    key       = word | string ;                (* no unescaped "*" *)
    value     = word | string ;                (* "*" is a wildcard *)
    word      = { letter | digit | "_" | "." | ":" | "/" | "-" | "*" }- ;
    string    = '"' { char | '\\"' | '\\\\' | '\\*' } '"' ;

Decisions an operator will notice:

* ``all`` selects every device. The empty string and a lone ``*`` are refused,
  so a blank form field can never target the whole fleet by accident.
* ``id``, ``profile`` and ``state`` (any case) are device facts; every other key
  names a label. Keywords must be quoted to serve as a key (``"and"=x``), and
  ``and``/``or``/``not`` to serve as a value (``site="or"``).
* ``!=`` and ``not in`` are exactly ``not (... = ...)`` and ``not (... in ...)``:
  they also match devices without the label, as Kubernetes selectors do.
  Write ``has(site) and site!=berlin`` to require the label.
* ``*`` is the only wildcard: any run of characters, including none, in
  ``=``, ``!=``, ``in`` lists and ``tag:``. ``\\*`` inside quotes is a literal star.
  So ``has(site)`` is sugar for ``site=*``, printed that way, and ``site!=*``
  selects devices without the label.
* A literal ``state`` value must be a known state, so a typo is an error and
  not a selector that quietly matches nothing.
* At most :data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` nested
  parentheses or ``not``; control and format characters are refused.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Literal

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.states import DeviceState

MAX_LENGTH = 2000
MAX_DEPTH = 32
DEVICE_STATES = frozenset(state.value for state in DeviceState)
RESERVED_KEYS = frozenset({"id", "profile", "state"})
KEYWORDS = frozenset({"all", "and", "has", "in", "not", "or", "tag"})
# Never bare values, so a half-typed "site= and x=1" fails instead of matching site "and".
_CONNECTIVES = frozenset({"and", "or", "not"})

_WORD = re.compile(r"[A-Za-z0-9_.:/*-]+")
_BARE = re.compile(r"[A-Za-z0-9_.:/-]*")
_OPERATOR = re.compile(r"[=!<>~&|]+")
_SPACE = frozenset(" \t\r\n")
Operator = Literal["=", "!=", "in", "not in"]
_OPERATOR_HINTS = {"==": "write '='", "&&": "write 'and'", "||": "write 'or'", "!": "write 'not'"}


class SelectorError(InvalidInputError):
    """Selector text that does not parse; ``position`` is the 1-based column it points at."""

    reason = "bad_selector"

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(message)
        self.position = position


def _fail(what: str, column: int, found: str = "", hint: str = "") -> SelectorError:
    message = f"{what} at column {column}" + (f", found {found}" if found else "")
    return SelectorError(message + (f"; {hint}" if hint else ""), position=column)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What a selector may look at: a read-only snapshot of one device."""

    device_id: str
    profile: str
    state: str
    tags: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", frozenset(self.tags))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True, slots=True, order=True)
class Pattern:
    """A value with ``*`` wildcards; ``parts`` is the literal text between them.

    ``("rpi4",)`` is exactly ``rpi4`` and ``("cam-", "")`` is ``cam-*``. Matching
    walks the parts with ``str.find`` and never builds a regex, so nothing an
    operator types can change what the matcher does or make it backtrack.
    """

    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("a pattern has at least one part")
        if len(self.parts) > 2:  # "a**b" is "a*b": one spelling per meaning
            middle = tuple(part for part in self.parts[1:-1] if part)
            object.__setattr__(self, "parts", (self.parts[0], *middle, self.parts[-1]))

    def matches(self, text: str) -> bool:
        if len(self.parts) == 1:
            return text == self.parts[0]
        first, *middle, last = self.parts
        end = len(text) - len(last)
        if end < len(first) or not text.startswith(first) or not text.endswith(last):
            return False
        position = len(first)
        for part in middle:  # with only '*', the leftmost match of each part is never wrong
            found = text.find(part, position, end)
            if found < 0:
                return False
            position = found + len(part)
        return True

    def __str__(self) -> str:
        bare = all(_BARE.fullmatch(part) for part in self.parts)
        text = "*".join(self.parts)
        if bare and text and text.lower() not in _CONNECTIVES:
            return text
        return '"' + "*".join(_escape(part) for part in self.parts) + '"'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("*", "\\*")


def _normal_key(key: str) -> str:
    return key.lower() if key.lower() in RESERVED_KEYS else key


def _key_text(key: str) -> str:
    lowered = key.lower()
    if key and _BARE.fullmatch(key) and lowered not in KEYWORDS and not lowered.startswith("tag:"):
        return key
    return f'"{_escape(key)}"'


def _lookup(device: DeviceFacts, key: str) -> str | None:
    facts = {"id": device.device_id, "profile": device.profile, "state": device.state}
    return facts[key] if key in facts else device.labels.get(key)


class Selector(ABC):
    """A parsed selector; ``str()`` is its canonical text."""

    __slots__ = ()

    @abstractmethod
    def matches(self, device: DeviceFacts) -> bool: ...

    @abstractmethod
    def __str__(self) -> str: ...


@dataclass(frozen=True, slots=True)
class All(Selector):
    def matches(self, device: DeviceFacts) -> bool:
        return True

    def __str__(self) -> str:
        return "all"


@dataclass(frozen=True, slots=True)
class Tag(Selector):
    pattern: Pattern

    def matches(self, device: DeviceFacts) -> bool:
        return any(self.pattern.matches(tag) for tag in device.tags)

    def __str__(self) -> str:
        return f"tag:{self.pattern}"


@dataclass(frozen=True, slots=True)
class Compare(Selector):
    """``key=v``, ``key!=v``, ``key in (v, ...)`` or ``key not in (...)``.

    A list is kept sorted and unique, as it is printed. The negated operators
    are exact complements, so they match devices that lack the label.
    """

    key: str
    op: Operator
    patterns: tuple[Pattern, ...]

    def __post_init__(self) -> None:
        if not self.patterns or (len(self.patterns) > 1 and self.op in ("=", "!=")):
            raise ValueError(f"{self.op!r} takes one value, 'in' at least one")
        object.__setattr__(self, "key", _normal_key(self.key))
        object.__setattr__(self, "patterns", tuple(sorted(set(self.patterns))))

    def matches(self, device: DeviceFacts) -> bool:
        value = _lookup(device, self.key)
        hit = value is not None and any(pattern.matches(value) for pattern in self.patterns)
        return hit != (self.op in ("!=", "not in"))

    def __str__(self) -> str:
        if self.op in ("=", "!="):
            return f"{_key_text(self.key)}{self.op}{self.patterns[0]}"
        values = ", ".join(str(pattern) for pattern in self.patterns)
        return f"{_key_text(self.key)} {self.op} ({values})"


@dataclass(frozen=True, slots=True)
class Not(Selector):
    operand: Selector

    def matches(self, device: DeviceFacts) -> bool:
        return not self.operand.matches(device)

    def __str__(self) -> str:
        inner = str(self.operand)
        return f"not ({inner})" if isinstance(self.operand, _Junction) else f"not {inner}"


@dataclass(frozen=True, slots=True)
class _Junction(Selector):
    """``and``/``or`` over two or more operands; nested ones of the same kind are flattened."""

    operands: tuple[Selector, ...]
    word: ClassVar[str]

    def __post_init__(self) -> None:
        flat: list[Selector] = []
        for operand in self.operands:
            if isinstance(operand, _Junction) and operand.word == self.word:
                flat.extend(operand.operands)
            else:
                flat.append(operand)
        if len(flat) < 2:
            raise ValueError(f"'{self.word}' needs at least two operands")
        object.__setattr__(self, "operands", tuple(flat))

    def __str__(self) -> str:
        texts = (
            f"({operand})" if isinstance(operand, Or) else str(operand)  # Or within And
            for operand in self.operands
        )
        return f" {self.word} ".join(texts)


@dataclass(frozen=True, slots=True)
class And(_Junction):
    word: ClassVar[str] = "and"

    def matches(self, device: DeviceFacts) -> bool:
        return all(operand.matches(device) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class Or(_Junction):
    word: ClassVar[str] = "or"

    def matches(self, device: DeviceFacts) -> bool:
        return any(operand.matches(device) for operand in self.operands)


def select(selector: Selector, devices: Iterable[DeviceFacts]) -> list[str]:
    """Ids of the devices ``selector`` matches, sorted so results are stable."""
    return sorted(device.device_id for device in devices if selector.matches(device))


def parse_selector(text: str) -> Selector:
    """Parse operator-typed selector text; raises :class:`SelectorError` and nothing else."""
    if len(text) > MAX_LENGTH:
        raise SelectorError(
            f"selector is {len(text)} characters long; the limit is {MAX_LENGTH}",
            position=MAX_LENGTH + 1,
        )
    tokens = _tokenize(text)
    if tokens[0].kind == "end":
        raise _fail("empty selector", 1, hint="write 'all' to select every device")
    if len(tokens) == 2 and tokens[0].text == "*":
        raise _fail("'*' is not a selector", tokens[0].column, hint="write 'all' for every device")
    return _Parser(tokens).parse()


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "string", "end", or the operator itself: "=", "!=", "(", ")", ","
    text: str
    column: int
    parts: tuple[str, ...] = ()  # a string's decoded text, split at unescaped '*'

    def describe(self) -> str:
        return "end of input" if self.kind == "end" else repr(self.text)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Cs")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char, column = text[i], i + 1
        if char in _SPACE:
            i += 1
        elif _is_control(char):
            raise _fail(f"control character U+{ord(char):04X} is not allowed", column)
        elif char in "(),":
            tokens.append(_Token(char, char, column))
            i += 1
        elif char == '"':
            token = _read_string(text, i)
            tokens.append(token)
            i += len(token.text)
        elif word := _WORD.match(text, i):
            tokens.append(_Token("word", word.group(), column))
            i = word.end()
        elif operator := _OPERATOR.match(text, i):
            op = operator.group()
            if op not in ("=", "!="):
                hint = _OPERATOR_HINTS.get(op, "operators are '=', '!=', 'in' and 'not in'")
                raise _fail(f"unknown operator {op!r}", column, hint=hint)
            tokens.append(_Token(op, op, column))
            i = operator.end()
        else:
            raise _fail(f"unexpected character {char!r}", column, hint="quote values that use it")
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _read_string(text: str, start: int) -> _Token:
    parts: list[str] = []
    current: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            parts.append("".join(current))
            return _Token("string", text[start : i + 1], start + 1, tuple(parts))
        if _is_control(char):
            raise _fail(f"control character U+{ord(char):04X} is not allowed", i + 1)
        if char == "*":
            parts.append("".join(current))
            current = []
        elif char == "\\":
            escaped = text[i + 1 : i + 2]
            if not escaped:
                break
            if escaped not in ('"', "\\", "*"):
                hint = 'only \\" \\\\ and \\* are escapes'
                raise _fail(f"unknown escape {chr(92) + escaped!r}", i + 1, hint=hint)
            current.append(escaped)
            i += 1
        else:
            current.append(char)
        i += 1
    raise _fail("unterminated string opened", start + 1)


class _Parser:
    """Recursive descent over the token list; depth is capped so input can't exhaust the stack."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._depth = 0

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        self._index = min(self._index + 1, len(self._tokens) - 1)
        return token

    def _at_word(self, word: str) -> bool:
        token = self._peek()
        return token.kind == "word" and token.text.lower() == word

    def _enter(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _fail(f"nesting deeper than {MAX_DEPTH} levels", token.column)

    def parse(self) -> Selector:
        result = self._or()
        token = self._peek()
        if token.kind == ")":
            raise _fail("unexpected ')' with no open parenthesis", token.column)
        if token.kind != "end":
            raise _fail("expected 'and', 'or' or the end", token.column, token.describe())
        return result

    def _or(self) -> Selector:
        operands = [self._and()]
        while self._at_word("or"):
            self._next()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Selector:
        operands = [self._unary()]
        while self._at_word("and"):
            self._next()
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _unary(self) -> Selector:
        token = self._peek()
        if not self._at_word("not"):
            return self._atom()
        self._next()
        self._enter(token)
        operand = self._unary()
        self._depth -= 1
        return Not(operand)

    def _atom(self) -> Selector:
        token = self._next()
        if token.kind == "(":
            self._enter(token)
            inner = self._or()
            self._close(token, "expected 'and', 'or' or ')'")
            self._depth -= 1
            return inner
        if token.kind == "string":
            return self._comparison(self._key(token))
        if token.kind != "word":
            raise _fail("expected a condition", token.column, token.describe())
        lowered = token.text.lower()
        if lowered == "all":
            return All()
        if lowered.startswith("tag:"):
            return Tag(self._tag(token))
        if lowered == "has" and self._peek().kind == "(":
            opening = self._next()
            key = self._key(self._next(), "after 'has('")
            self._close(opening, "expected ')' after the key")
            return Compare(key, "=", (Pattern(("", "")),))  # has(k) is k=*: any value, even ""
        if lowered in KEYWORDS:
            hint = (
                "write tag:NAME"
                if lowered == "tag"
                else f'quote it to use it as a key: "{token.text}"'
            )
            raise _fail("expected a condition", token.column, token.describe(), hint)
        return self._comparison(self._key(token))

    def _close(self, opening: _Token, expected: str) -> None:
        token = self._next()
        if token.kind == "end":
            raise _fail("unclosed parenthesis opened", opening.column)
        if token.kind != ")":
            raise _fail(expected, token.column, token.describe())

    def _key(self, token: _Token, where: str = "") -> str:
        if token.kind not in ("word", "string"):
            raise _fail(f"expected a key {where}", token.column, token.describe())
        parts = token.parts if token.kind == "string" else (token.text,)
        if len(parts) > 1 or "*" in parts[0]:
            raise _fail(
                "'*' is not allowed in a key", token.column, hint="in a quoted key a star is \\*"
            )
        return _normal_key(parts[0])

    def _tag(self, token: _Token) -> Pattern:
        name = token.text[len("tag:") :]
        if name:
            return Pattern(tuple(name.split("*")))
        following = self._next()
        if following.kind != "string":
            raise _fail("expected a tag name after 'tag:'", following.column, following.describe())
        return Pattern(following.parts)

    def _comparison(self, key: str) -> Selector:
        token = self._next()
        if token.kind in ("=", "!="):
            op: Operator = "=" if token.kind == "=" else "!="
            return Compare(key, op, (self._value(key, f"after '{op}'"),))
        negated = token.kind == "word" and token.text.lower() == "not"
        if negated:
            token = self._next()
        if token.kind != "word" or token.text.lower() != "in":
            expected = (
                "expected 'in' after 'not'" if negated else f"expected an operator after {key!r}"
            )
            hint = "" if negated else "operators are '=', '!=', 'in' and 'not in'"
            raise _fail(expected, token.column, token.describe(), hint)
        opening = self._next()
        if opening.kind != "(":
            raise _fail("expected '(' after 'in'", opening.column, opening.describe())
        if self._peek().kind == ")":
            raise _fail("empty list in 'in ()'", opening.column, hint="list at least one value")
        patterns = [self._value(key, "after '('")]
        while self._peek().kind == ",":
            self._next()
            patterns.append(self._value(key, "after ','"))
        self._close(opening, "expected ',' or ')' in the list")
        return Compare(key, "not in" if negated else "in", tuple(patterns))

    def _value(self, key: str, where: str) -> Pattern:
        token = self._next()
        if token.kind not in ("word", "string") or token.text.lower() in _CONNECTIVES:
            hint = f'quote it to use it as a value: "{token.text}"' if token.kind == "word" else ""
            raise _fail(f"expected a value {where}", token.column, token.describe(), hint)
        pattern = Pattern(token.parts if token.kind == "string" else tuple(token.text.split("*")))
        if key == "state" and len(pattern.parts) == 1 and pattern.parts[0] not in DEVICE_STATES:
            known = "known states: " + ", ".join(sorted(DEVICE_STATES))
            raise _fail(f"unknown device state {pattern.parts[0]!r}", token.column, hint=known)
        return pattern
