"""Loading flow definitions from untrusted YAML (or JSON) text, safely.

Contract::

    load_document(text, *, max_bytes=1_048_576, max_depth=64, max_nodes=100_000)
        -> tuple[value, LineMap]

returns the single document of ``text`` as plain JSON-like Python values (``dict`` with ``str``
keys, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``) together with a ``LineMap`` that
gives the 1-based line of every mapping key and sequence item by its path, e.g.
``lines.get(("States", 3, "Next"))``. Anything unacceptable raises ``YamlError(message, line)``.

What is refused, and why:

* more than ``max_bytes`` bytes of UTF-8 (checked before any parsing);
* anchors and aliases, at the first one seen: with no aliases a "billion laughs" document can
  never expand, so it is rejected in microseconds and with no memory to speak of;
* duplicate mapping keys ("duplicate key 'States' (line 9, first at line 4)");
* any tag other than the YAML core ones (``!!str``, ``!!int``, ``!!float``, ``!!bool``,
  ``!!null``, ``!!map``, ``!!seq``) - in particular every ``!!python/...`` tag;
* nesting deeper than ``max_depth`` and more than ``max_nodes`` nodes;
* mapping keys that are not strings (``1: x``, ``null: x``, a mapping as a key);
* ``.inf``/``.nan`` and numbers (integers too) too large for a float, which JSON cannot carry;
* more than one document, and an empty one ("the definition is empty").

Plain scalars are resolved as in the YAML 1.2 core schema, not PyYAML's YAML 1.1 rules:
``true``/``false`` (any letter case) are booleans and ``on``/``yes``/``No``/``Off`` are strings;
``null``, ``~`` and the empty scalar are null; ``[-+]?[0-9]+`` is an integer unless it has a
leading zero (``012`` stays the string ``"012"``); ``0x1F`` and ``0o17`` are integers; decimal
and exponent forms are floats; everything else - timestamps included - is a string. Quoted and
block scalars are always strings.

The document is parsed as a stream of events (libyaml's C parser when PyYAML has it), and the
values are built here from those events, so none of PyYAML's constructors ever runs.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from typing import Any

import yaml

__all__ = ["LineMap", "YamlError", "load_document"]

Path = tuple[str | int, ...]

try:  # pragma: no cover - depends on how PyYAML was built
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


class YamlError(Exception):
    """The text is not an acceptable definition document. ``line`` is 1-based, or None."""

    def __init__(self, message: str, line: int | None = None):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)

    def as_diagnostic(self):
        """The error as a ``graph.Diagnostic`` for the document as a whole."""
        from .graph import Diagnostic

        return Diagnostic(path="", message=self.message, line=self.line)


class LineMap:
    """1-based source lines of the nodes of a loaded document, by path.

    A path is a tuple of mapping keys and sequence indexes: ``("States", 3, "Next")`` is the
    line of the key ``Next`` of the fourth state; ``("States", 3)`` the line where that state's
    item starts; ``()`` the line where the document's top-level node starts.
    """

    __slots__ = ("_lines",)

    def __init__(self, lines: dict[Path, int] | None = None):
        self._lines: dict[Path, int] = dict(lines or {})

    def get(self, path: Iterable[str | int]) -> int | None:
        """The line of exactly ``path``, or None when the document has no such node."""
        return self._lines.get(tuple(path))

    def nearest(self, path: Iterable[str | int]) -> int | None:
        """The line of ``path`` or, when it is absent (say a missing field), of its nearest
        ancestor that exists."""
        parts = tuple(path)
        while True:
            line = self._lines.get(parts)
            if line is not None or not parts:
                return line
            parts = parts[:-1]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and path in self._lines

    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        return f"LineMap({len(self._lines)} paths)"


# --- scalar resolution (YAML 1.2 core schema, with the JSON-friendly tweaks above) ----------

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (
    _TAG_PREFIX + "str",
    _TAG_PREFIX + "int",
    _TAG_PREFIX + "float",
    _TAG_PREFIX + "bool",
    _TAG_PREFIX + "null",
)
_MAP, _SEQ = _TAG_PREFIX + "map", _TAG_PREFIX + "seq"
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL}

_INT_RE = re.compile(r"[-+]?[0-9]+")
_HEX_RE = re.compile(r"0x[0-9a-fA-F]+")
_OCT_RE = re.compile(r"0o[0-7]+")
_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT_RE = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")

_NO_VALUE = object()  # "this plain scalar is not a number"


def _number(text: str, line: int | None) -> Any:
    """The int or float a plain scalar denotes, or ``_NO_VALUE``."""
    if _INT_RE.fullmatch(text):
        digits = text.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0":
            return _NO_VALUE  # 012: a string (account ids, zip codes), not octal or 12
        return _integer(text, 10, len(digits) > _MAX_INT_DIGITS, line)
    if _HEX_RE.fullmatch(text):
        return _integer(text[2:], 16, len(text) - 2 > _MAX_INT_DIGITS, line)
    if _OCT_RE.fullmatch(text):
        return _integer(text[2:], 8, len(text) - 2 > _MAX_INT_DIGITS, line)
    if _FLOAT_RE.fullmatch(text):
        value = float(text)
        if math.isinf(value):
            raise YamlError(f"the number {_shown(text)} is too large", line)
        return value
    if _SPECIAL_FLOAT_RE.fullmatch(text):
        raise YamlError(
            f"{text} is not a JSON number; quote it if you mean the string {text!r}", line
        )
    return _NO_VALUE


# Integers are JSON numbers, so they must fit a double (±1.8e308), as floats must; the digit
# count is checked first because int() refuses more than 4,300 digits with a ValueError.
_MAX_INT_DIGITS = 400
_MAX_INT = int(sys.float_info.max)


def _integer(text: str, base: int, too_long: bool, line: int | None) -> int:
    value = None if too_long else int(text, base)
    if value is None or not -_MAX_INT <= value <= _MAX_INT:
        raise YamlError(f"the number {_shown(text)} is too large", line)
    return value


def _shown(text: str) -> str:
    """A number's text for a message, shortened if it is very long."""
    return text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"


# Every number form above starts with one of these; other text needs no regex at all.
_NUMBER_START = frozenset("0123456789+-.")


def _resolve_plain(text: str, line: int | None) -> Any:
    if len(text) <= 5:
        lowered = text.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        if text in ("", "~") or lowered == "null":
            return None
    if text[0] not in _NUMBER_START:
        return text
    value = _number(text, line)
    return text if value is _NO_VALUE else value


def _resolve_tagged(tag: str, text: str, line: int | None) -> Any:
    """A scalar with an explicit core tag (``!!int 12``)."""
    if tag == _STR:
        return text
    value = _resolve_plain(text, line)
    expected = {_INT: int, _FLOAT: (int, float), _BOOL: bool, _NULL: type(None)}[tag]
    if isinstance(value, bool) and tag != _BOOL or not isinstance(value, expected):
        raise YamlError(f"{text!r} is not a valid !!{tag[len(_TAG_PREFIX) :]}", line)
    return float(value) if tag == _FLOAT else value


def _check_tag(tag: str | None, allowed: set[str], line: int | None) -> None:
    if tag is None or tag == "!" or tag in allowed:
        return
    shown = "!!" + tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag
    raise YamlError(f"the YAML tag {shown} is not allowed", line)


def _type_name(value: Any) -> str:
    """The JSON type of a loaded scalar, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "string"


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


# --- building values from the event stream ---------------------------------------------------


class _Frame:
    """A collection being built: a mapping (waiting for a key or a value) or a sequence."""

    __slots__ = ("container", "path", "key", "key_line", "first_lines")

    def __init__(self, container: dict | list, path: Path):
        self.container = container
        self.path = path
        self.key: Any = _NO_VALUE  # mapping: the key waiting for its value
        self.key_line: int | None = None
        self.first_lines: dict[str, int | None] = {}  # mapping: where each key first appeared


def load_document(
    text: str | bytes,
    *,
    max_bytes: int = 1_048_576,
    max_depth: int = 64,
    max_nodes: int = 100_000,
) -> tuple[Any, LineMap]:
    """Parse ``text`` (YAML or JSON) into plain values and a ``LineMap``; see the module
    docstring for what is refused. Raises ``YamlError``."""
    if isinstance(text, str):
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise YamlError("the definition is not valid UTF-8 text") from exc
    elif isinstance(text, bytes | bytearray | memoryview):
        size = len(text)
    else:
        raise TypeError(f"load_document needs str or bytes, not {type(text).__name__}")
    if size > max_bytes:
        raise YamlError(f"the definition is {size} bytes; at most {max_bytes} are allowed")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise YamlError("the definition is not valid UTF-8 text") from exc
    text = text.removeprefix("\ufeff")

    try:
        return _build(yaml.parse(text, Loader=_Loader), max_depth, max_nodes)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{problem} ({exc.context})"
        raise YamlError(f"invalid YAML: {problem}", _line(mark)) from None
    except yaml.YAMLError as exc:  # e.g. a reader error for control characters
        raise YamlError(f"invalid YAML: {exc}") from None


def _build(events: Iterable[Any], max_depth: int, max_nodes: int) -> tuple[Any, LineMap]:
    lines: dict[Path, int] = {}
    stack: list[_Frame] = []
    root: Any = _NO_VALUE
    documents = 0
    nodes = 0
    plain: dict[str, Any] = {}  # resolved plain scalars by text: documents repeat them a lot

    def place(value: Any, line: int | None, is_key_candidate: bool) -> Path | None:
        """Attach a finished node to its parent; return the node's path (None for a key)."""
        nonlocal root
        if not stack:
            root = value
            if line is not None:
                lines[()] = line
            return ()
        frame = stack[-1]
        container = frame.container
        if isinstance(container, list):
            path = (*frame.path, len(container))
            container.append(value)
            if line is not None:
                lines[path] = line
            return path
        if frame.key is _NO_VALUE:  # this node is a key
            if not is_key_candidate:
                raise YamlError("mapping keys must be strings, got a collection", line)
            if not isinstance(value, str):
                shown = _type_name(value) + ("" if value is None else f" {json.dumps(value)}")
                raise YamlError(f"mapping keys must be strings, got {shown}; quote it", line)
            first = frame.first_lines.get(value, _NO_VALUE)
            if first is not _NO_VALUE:
                raise YamlError(
                    f"duplicate key {value!r} (line {line}, first at line {first})", line
                )
            frame.first_lines[value] = line
            frame.key, frame.key_line = value, line
            return None
        path = (*frame.path, frame.key)
        container[frame.key] = value
        if frame.key_line is not None:
            lines[path] = frame.key_line
        frame.key, frame.key_line = _NO_VALUE, None
        return path

    for event in events:
        kind = type(event)
        if kind is yaml.StreamStartEvent or kind is yaml.StreamEndEvent:
            continue
        line = _line(event.start_mark)
        if kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise YamlError("only one YAML document is allowed", line)
            continue
        if kind is yaml.DocumentEndEvent:
            continue
        if kind is yaml.AliasEvent or getattr(event, "anchor", None) is not None:
            raise YamlError("YAML anchors and aliases are not allowed", line)
        if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            stack.pop()  # the collection was attached to its parent when it started
            continue
        nodes += 1
        if nodes > max_nodes:
            raise YamlError(f"the definition has more than {max_nodes} YAML nodes", line)
        if kind is yaml.ScalarEvent:
            tag = event.tag
            if tag is None and event.implicit[0]:  # plain, untagged
                text = event.value
                value = plain.get(text, _NO_VALUE)
                if value is _NO_VALUE:
                    value = plain[text] = _resolve_plain(text, line)
            else:
                _check_tag(tag, _SCALAR_TAGS, line)
                if tag in _SCALAR_TAGS:
                    value = _resolve_tagged(tag, event.value, line)
                else:  # quoted, block, or the non-specific "!" tag
                    value = event.value
            place(value, line, is_key_candidate=True)
            continue
        # a collection starts
        if len(stack) >= max_depth:
            raise YamlError(f"the definition is nested deeper than {max_depth} levels", line)
        if kind is yaml.MappingStartEvent:
            _check_tag(event.tag, {_MAP}, line)
            container: dict | list = {}
        else:
            _check_tag(event.tag, {_SEQ}, line)
            container = []
        path = place(container, line, is_key_candidate=False)
        stack.append(_Frame(container, path if path is not None else ()))

    if root is _NO_VALUE or root is None:  # no document, "---" alone, comments only, "~"
        raise YamlError("the definition is empty", None)
    return root, LineMap(lines)
