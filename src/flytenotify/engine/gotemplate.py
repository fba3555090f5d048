"""A safe renderer for the Go ``text/template`` subset that notifications use.

Flyte 2's ``flyte.notify`` templates are written for Go's ``text/template``:
``{{.Run.Name}}``, ``{{if .Error}}...{{else}}...{{end}}``, ``{{printf "%s" .Phase}}``.
This module parses such a template once into a small tree (compiled templates
are cached: the same few render for every run) and renders it against a nested
mapping of data that the caller chooses. It is pure: no I/O, standard library
only. Where Go renders a template, this renders the same text (the golden
vectors in ``tests/data/gotemplate`` are Go's own output, Go 1.19); where Go
fails, this raises :class:`TemplateError`. The few places where Go renders but
this refuses are listed below; each is an error, never a blank or half-written
message.

Data
    A mapping with ``str`` keys whose values are ``str``, ``int``, ``float``,
    ``bool``, ``None``, a nested mapping, or a list/tuple of those. The data is
    read like Go's ``map[string]any`` with ``missingkey=error``: ``.Foo`` that
    the mapping lacks is an error naming the fields it has. ``None`` is Go's
    ``nil``: false in ``if``, ``<no value>`` when printed by an action, ``<nil>``
    inside ``print`` and ``printf "%v"``, and an empty list to ``range``. A
    value of any other type is the caller's mistake: ``TypeError``.

Supported
    Text; actions ``{{pipeline}}``; field chains ``.A.B``, ``.``, ``$``, ``$.A``;
    variables ``{{$x := pipeline}}`` and ``{{$x = pipeline}}`` (scoped like Go:
    to the enclosing ``if``/``with``/``range`` or the template; ``=`` to a
    variable not declared there is an error); ``{{if}}``,
    ``{{else if}}``, ``{{else}}``, ``{{end}}`` with Go's truth (false, 0, ``""``,
    ``None`` and empty lists/mappings are false); ``{{with}}`` (rebinds ``.``;
    ``{{else with}}`` as in Go 1.23, which the golden vectors' Go lacks);
    ``{{range}}`` over a list, with ``{{else}}``, ``$v :=``, ``$i, $v :=``,
    ``{{break}}`` and ``{{continue}}``; comments
    ``{{/* */}}``; the trim markers ``{{- `` and `` -}}`` (a space, tab or
    newline must follow or precede the dash, exactly as in Go); string (both
    quote kinds), number, character and bool literals, ``nil``; pipelines with
    ``|`` and parentheses. Functions: ``and``, ``or`` (both short-circuit and
    return an operand), ``not``, ``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge``
    (Go's rules: comparing a string with a number is an error), ``len``
    (bytes of UTF-8, as Go counts), ``index``, ``print``, ``println``,
    ``printf``, ``html``, ``js``, ``urlquery``. ``printf`` takes the flags
    ``-``, ``+``, space and ``0``, a width and a precision, and formats as Go
    does: ``%v`` any value that prints; ``%s``, ``%q``, ``%x``, ``%X`` text;
    ``%d``, ``%x``, ``%X``, ``%o``, ``%b`` integers; ``%e``, ``%E``, ``%f``,
    ``%F``, ``%g``, ``%G`` floats; ``%t`` bools; ``%%``. Which characters
    ``%q`` and ``js`` escape as unprintable follows Python's Unicode tables,
    which can be newer than a given Go's (Go 1.19 knows Unicode 13).

Refused (a :class:`TemplateError`), and why
    - ``{{template}}``, ``{{define}}``, ``{{block}}``: a notification is one
      template; there is nothing to include.
    - ``call`` and ``slice``, and any function not listed above: data holds no
      functions, and ``slice`` cuts UTF-8 mid-character (``printf "%.80s"``
      shortens text safely).
    - A field the data lacks (``.Foo``, ``.Run.Nope``), or a field of a value
      that is not a mapping.
    - Printing a mapping or a list (Go would write ``map[...]`` or ``[...]``):
      name one of its fields or elements.
    - ``range`` over anything but a list or ``None``: over a mapping (Go sorts
      its keys; with Go structs it fails), a string or a number; and ``range
      $v = ...`` (a range declares its variables with ``:=``).
    - ``index`` of a key the mapping lacks (Go yields ``<no value>``).
    - A ``printf`` that Go would answer with ``%!`` markers (a verb that does
      not fit the value, a missing or extra argument, a ``%`` with no verb),
      and what no notification needs: the flag ``#``, ``*`` and ``[n]``,
      ``%c``, ``%U``, ``%T``, ``%p``, ``%q`` of a number, hexadecimal floats
      (``%x`` or ``%b`` of a float), a width or precision above
      :data:`MAX_PRINTF_WIDTH`.
    - Complex numbers and integers beyond 64 bits.
    - Bounds, so a hostile template cannot exhaust memory or CPU: a template
      longer than :data:`MAX_TEMPLATE_LENGTH` characters, control structures
      and parentheses nested deeper than :data:`MAX_NESTING`, more than
      :data:`MAX_STEPS` evaluation steps, output (or any intermediate text)
      longer than :data:`MAX_OUTPUT_LENGTH` characters.

Every error names the construct and its position, ``line:column`` (columns
count characters from 1), e.g. ``1:9: .Run.Nope: .Run has no field "Nope" (it
has Domain, Name, Project, URL)``, so it can be kept as a dead letter's reason
that the template's author can act on.

Escaping contexts
    The caller chooses one per render (:class:`Context`). Every value an action
    prints passes through the context's escaper before it is written; the
    template's own text is written as it is. :data:`PLAIN_TEXT` leaves values
    as they are; :data:`HTML` escapes ``& < > " '`` (except what the ``html``
    function already escaped, so ``{{html .Error}}`` is not escaped twice);
    :data:`JSON_STRING` escapes a value so it is valid inside a JSON string
    literal. Values are inserted once: a value holding ``{{.Run.Name}}`` is
    text, never expanded again.

Webhook bodies
    :func:`render_json_body`: the Flyte SDK writes a body with ``json.dumps``,
    so the template text sits inside JSON strings. When the template parses as
    JSON, every string in it (keys and values, recursively) is rendered as its
    own template in plain text and the document is serialised again, so any
    value (quotes, backslashes, newlines) is data inside valid JSON; numbers
    keep their original spelling; two keys of one object that render alike are
    an error rather than one silently replacing the other. Otherwise (a
    hand-written body such as ``{"n": {{.Count}}}``, or one with ``NaN``) the
    whole text is rendered with :data:`JSON_STRING`. The step and output bounds
    hold for the whole body, not each string.
"""

from __future__ import annotations

import enum
import functools
import html
import json
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, NamedTuple, NoReturn, TypeAlias

__all__ = [
    "HTML",
    "JSON_STRING",
    "MAX_NESTING",
    "MAX_OUTPUT_LENGTH",
    "MAX_PRINTF_WIDTH",
    "MAX_STEPS",
    "MAX_TEMPLATE_LENGTH",
    "PLAIN_TEXT",
    "Context",
    "JsonBodyTemplate",
    "Template",
    "TemplateError",
    "compile_json_body",
    "compile_template",
    "render",
    "render_json_body",
]

MAX_TEMPLATE_LENGTH: Final = 100_000
"""Characters in one template (a whole webhook body counts as one)."""
MAX_NESTING: Final = 32
"""``if``/``with``/``range`` blocks and parentheses inside one another (an
``else if`` chain counts once), and JSON arrays/objects in a webhook body."""
MAX_STEPS: Final = 200_000
"""Nodes walked and commands evaluated in one render (loops count each pass)."""
MAX_OUTPUT_LENGTH: Final = 1_000_000
"""Characters of output of one render, and of any one intermediate value."""
MAX_PRINTF_WIDTH: Final = 10_000
"""The largest width or precision ``printf`` accepts."""

_FUNCTIONS: Final = (
    "and",
    "eq",
    "ge",
    "gt",
    "html",
    "index",
    "js",
    "le",
    "len",
    "lt",
    "ne",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
)
_REFUSED_FUNCTIONS: Final = {
    "call": "notification data holds no functions to call",
    "slice": 'it cuts text mid-character; use printf "%.80s" to shorten text',
}


class TemplateError(ValueError):
    """A template that cannot be rendered: bad syntax, unknown field, a bound hit.

    ``reason`` says what is wrong; ``line`` and ``column`` (from 1, counting
    characters) say where, when a position applies; ``location`` says which
    string of a webhook body held the template. ``str()`` joins them.
    """

    def __init__(
        self,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        location: str | None = None,
    ) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.location = location
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(f"in {self.location}")
        if self.line is not None and self.column is not None:
            parts.append(f"{self.line}:{self.column}")
        parts.append(self.reason)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self._describe()

    def at(self, location: str) -> TemplateError:
        """The same error, saying which string of a webhook body it came from."""
        return TemplateError(self.reason, line=self.line, column=self.column, location=location)


def _error_at(source: str, pos: int, reason: str) -> TemplateError:
    line = source.count("\n", 0, pos) + 1
    column = pos - (source.rfind("\n", 0, pos) + 1) + 1
    return TemplateError(reason, line=line, column=column)


# --- escaping contexts -------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """Where rendered values land, and so how each is escaped.

    ``escape`` is applied to every value an action prints. ``trusts`` names the
    template functions whose result is already escaped for this context (for
    HTML, ``html``), so an action ending with one is written as it is.
    """

    name: str
    escape: Callable[[str], str]
    trusts: frozenset[str] = frozenset()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    """``\\udXXX`` for a lone surrogate, which JSON can carry and UTF-8 cannot."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _json_string_body(value: str) -> str:
    return _escape_surrogates(json.dumps(value, ensure_ascii=False)[1:-1])


def _html_escape(value: str) -> str:
    return html.escape(value, quote=True)


def _identity(value: str) -> str:
    return value


PLAIN_TEXT: Final = Context("plain text", _identity)
HTML: Final = Context("HTML", _html_escape, frozenset({"html"}))
JSON_STRING: Final = Context("JSON string", _json_string_body)


# --- lexer -------------------------------------------------------------------


class _T(enum.Enum):
    TEXT = "text"
    LEFT = "{{"
    RIGHT = "}}"
    SPACE = "space"
    IDENT = "identifier"
    FIELD = "field"
    VAR = "variable"
    DOT = "."
    BOOL = "bool"
    NUMBER = "number"
    CHAR_CONST = "character constant"
    COMPLEX = "complex number"
    STRING = "string"
    RAW_STRING = "raw string"
    PIPE = "|"
    ASSIGN = "="
    DECLARE = ":="
    LPAREN = "("
    RPAREN = ")"
    CHAR = "character"
    EOF = "end of template"
    ERROR = "error"
    # Keywords.
    BLOCK = "block"
    BREAK = "break"
    CONTINUE = "continue"
    DEFINE = "define"
    ELSE = "else"
    END = "end"
    IF = "if"
    NIL = "nil"
    RANGE = "range"
    TEMPLATE = "template"
    WITH = "with"


_KEYWORDS: Final = {
    kind.value: kind
    for kind in (
        _T.BLOCK,
        _T.BREAK,
        _T.CONTINUE,
        _T.DEFINE,
        _T.ELSE,
        _T.END,
        _T.IF,
        _T.NIL,
        _T.RANGE,
        _T.TEMPLATE,
        _T.WITH,
    )
}


_State: TypeAlias = "Callable[[], _State | None]"


class _Token(NamedTuple):
    kind: _T
    value: str
    pos: int


_SPACES: Final = " \t\r\n"  # Go's own: what trim markers remove and actions skip.


def _is_space(char: str) -> bool:
    return char != "" and char in _SPACES


def _is_alnum(char: str) -> bool:
    return char == "_" or char.isalpha() or char.isdecimal()


def _describe_rune(char: str) -> str:
    """Go's ``%#U``: ``U+0024 '$'``."""
    return f"U+{ord(char):04X} {char!r}"


class _Lexer:
    """Go's text/template lexer (parse/lex.go), state for state.

    It stops at the first problem with an ``ERROR`` token, so the parser reports
    problems in the order Go does.
    """

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.start = 0
        self.paren_depth = 0
        self.action_start = 0
        self.tokens: list[_Token] = []

    def run(self) -> list[_Token]:
        state: _State | None = self.lex_text
        while state is not None:
            state = state()
        # Reading past the end keeps answering the last token (EOF or ERROR).
        return self.tokens + [self.tokens[-1]] * 3

    # helpers
    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def next(self) -> str:
        char = self.peek()
        if char:
            self.pos += 1
        return char

    def accept(self, valid: str) -> bool:
        char = self.peek()
        if char and char in valid:
            self.pos += 1
            return True
        return False

    def accept_run(self, valid: str) -> None:
        while self.accept(valid):
            pass

    def emit(self, kind: _T) -> None:
        self.tokens.append(_Token(kind, self.src[self.start : self.pos], self.start))
        self.start = self.pos

    def error(self, message: str, pos: int | None = None) -> _State | None:
        """Ends lexing with an ERROR token (Go's errorf)."""
        self.tokens.append(_Token(_T.ERROR, message, self.start if pos is None else pos))
        return None

    def has_left_trim(self, at: int) -> bool:
        return self.src[at : at + 1] == "-" and _is_space(self.src[at + 1 : at + 2])

    def has_right_trim(self, at: int) -> bool:
        return _is_space(self.src[at : at + 1]) and self.src[at + 1 : at + 2] == "-"

    def at_right_delim(self) -> tuple[bool, bool]:
        if self.has_right_trim(self.pos) and self.src.startswith("}}", self.pos + 2):
            return True, True
        return self.src.startswith("}}", self.pos), False

    def skip_leading_spaces(self) -> None:
        while _is_space(self.peek()):
            self.pos += 1
        self.start = self.pos

    def at_terminator(self) -> bool:
        char = self.peek()
        return (
            char == "" or _is_space(char) or char in ".,|:)(" or self.src.startswith("}}", self.pos)
        )

    # states
    def lex_text(self) -> _State | None:
        found = self.src.find("{{", self.pos)
        if found < 0:
            self.pos = len(self.src)
            if self.pos > self.start:
                self.emit(_T.TEXT)
            self.emit(_T.EOF)
            return None
        end = found
        if self.has_left_trim(found + 2):
            end = len(self.src[self.start : found].rstrip(_SPACES)) + self.start
        if end > self.start:
            self.pos = end
            self.emit(_T.TEXT)
        self.pos = self.start = found
        return self.lex_left_delim

    def lex_left_delim(self) -> _State | None:
        self.action_start = self.pos
        self.pos += 2
        after_marker = 2 if self.has_left_trim(self.pos) else 0
        if self.src.startswith("/*", self.pos + after_marker):
            self.pos += after_marker
            return self.lex_comment
        self.emit(_T.LEFT)
        self.pos += after_marker
        self.start = self.pos
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self) -> _State | None:
        end = self.src.find("*/", self.pos + 2)
        if end < 0:
            return self.error("unclosed comment: /* has no matching */", self.action_start)
        self.pos = end + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.error(
                "comment ends before closing delimiter: write */}} with nothing between",
                self.action_start,
            )
        self.pos += 4 if trim else 2
        if trim:
            self.skip_leading_spaces()
        self.start = self.pos
        return self.lex_text

    def lex_right_delim(self) -> _State | None:
        trim = self.has_right_trim(self.pos)
        if trim:
            self.pos += 2
            self.start = self.pos
        self.pos += 2
        self.emit(_T.RIGHT)
        if trim:
            self.skip_leading_spaces()
        return self.lex_text

    def lex_inside_action(self) -> _State | None:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            return self.error("unclosed left paren: ( has no matching )")
        char = self.next()
        if char == "":
            return self.error(
                "unclosed action: {{ has no matching }}",
                self.action_start,
            )
        if _is_space(char):
            self.pos -= 1
            return self.lex_space
        if char == "=":
            self.emit(_T.ASSIGN)
        elif char == ":":
            if self.next() != "=":
                return self.error("expected :=")
            self.emit(_T.DECLARE)
        elif char == "|":
            self.emit(_T.PIPE)
        elif char == '"':
            return self.lex_quote
        elif char == "`":
            return self.lex_raw_quote
        elif char == "$":
            return self.lex_variable
        elif char == "'":
            return self.lex_char
        elif char == "." and self.peek() != "" and not "0" <= self.peek() <= "9":
            return self.lex_field
        elif char in "+-.0123456789":
            self.pos -= 1
            return self.lex_number
        elif _is_alnum(char):
            self.pos -= 1
            return self.lex_identifier
        elif char == "(":
            self.emit(_T.LPAREN)
            self.paren_depth += 1
        elif char == ")":
            self.emit(_T.RPAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.error("unexpected right paren: ) has no matching (")
        elif " " <= char <= "~":
            self.emit(_T.CHAR)
        else:
            return self.error(f"unrecognized character in action: {_describe_rune(char)}")
        return self.lex_inside_action

    def lex_space(self) -> _State | None:
        count = 0
        while _is_space(self.peek()):
            self.pos += 1
            count += 1
        if self.has_right_trim(self.pos - 1) and self.src.startswith("}}", self.pos + 1):
            self.pos -= 1
            if count == 1:
                return self.lex_right_delim
        self.emit(_T.SPACE)
        return self.lex_inside_action

    def lex_identifier(self) -> _State | None:
        while _is_alnum(self.peek()):
            self.pos += 1
        word = self.src[self.start : self.pos]
        if not self.at_terminator():
            return self.error(f"bad character {_describe_rune(self.peek())} after {word}")
        if word in _KEYWORDS:
            self.emit(_KEYWORDS[word])
        elif word in ("true", "false"):
            self.emit(_T.BOOL)
        else:
            self.emit(_T.IDENT)
        return self.lex_inside_action

    def lex_field(self) -> _State | None:
        return self.lex_field_or_variable(_T.FIELD)

    def lex_variable(self) -> _State | None:
        return self.lex_field_or_variable(_T.VAR)

    def lex_field_or_variable(self, kind: _T) -> _State | None:
        if self.at_terminator():
            self.emit(_T.VAR if kind is _T.VAR else _T.DOT)
            return self.lex_inside_action
        while _is_alnum(self.peek()):
            self.pos += 1
        if not self.at_terminator():
            word = self.src[self.start : self.pos]
            return self.error(f"bad character {_describe_rune(self.peek())} after {word}")
        self.emit(kind)
        return self.lex_inside_action

    def lex_char(self) -> _State | None:
        while True:
            char = self.next()
            if char == "\\":
                char = self.next()
                if char not in ("", "\n"):
                    continue
            if char in ("", "\n"):
                return self.error("unterminated character constant")
            if char == "'":
                break
        self.emit(_T.CHAR_CONST)
        return self.lex_inside_action

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _is_alnum(self.peek()):
            self.pos += 1
            return False
        return True

    def lex_number(self) -> _State | None:
        if not self.scan_number():
            return self.error(f"bad number syntax: {self.src[self.start : self.pos]!r}")
        if self.peek() in ("+", "-"):
            if not self.scan_number() or self.src[self.pos - 1] != "i":
                return self.error(f"bad number syntax: {self.src[self.start : self.pos]!r}")
            self.emit(_T.COMPLEX)
        else:
            self.emit(_T.NUMBER)
        return self.lex_inside_action

    def lex_quote(self) -> _State | None:
        while True:
            char = self.next()
            if char == "\\":
                char = self.next()
                if char not in ("", "\n"):
                    continue
            if char in ("", "\n"):
                return self.error("unterminated quoted string")
            if char == '"':
                break
        self.emit(_T.STRING)
        return self.lex_inside_action

    def lex_raw_quote(self) -> _State | None:
        end = self.src.find("`", self.pos)
        if end < 0:
            return self.error("unterminated raw quoted string")
        self.pos = end + 1
        self.emit(_T.RAW_STRING)
        return self.lex_inside_action


# --- literals ----------------------------------------------------------------

_SIMPLE_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_HEX_DIGITS: Final = "0123456789abcdefABCDEF"


def _unquote_escape(text: str, i: int, quote: str) -> tuple[int | str, int]:
    """One escape after a backslash at ``text[i]`` (Go's strconv.UnquoteChar).

    Returns a character, or an int for a byte written as ``\\x`` or octal, and
    the index after the escape; raises ValueError when it is not Go syntax.
    """
    char = text[i : i + 1]
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char], i + 1
    if char == quote:
        return char, i + 1
    size = {"x": 2, "u": 4, "U": 8}.get(char)
    if size is not None:
        digits = text[i + 1 : i + 1 + size]
        if len(digits) != size or any(d not in _HEX_DIGITS for d in digits):
            raise ValueError("invalid escape")
        value = int(digits, 16)
        if char == "x":
            return value, i + 1 + size
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise ValueError("invalid code point")
        return chr(value), i + 1 + size
    if "0" <= char <= "7":
        digits = text[i : i + 3]
        if len(digits) != 3 or any(not "0" <= d <= "7" for d in digits):
            raise ValueError("invalid octal escape")
        value = int(digits, 8)
        if value > 255:
            raise ValueError("octal escape above \\377")
        return value, i + 3
    raise ValueError("unknown escape")


def _unquote_string(text: str) -> str:
    """Go's strconv.Unquote for a lexed string token (quotes included)."""
    if text.startswith("`"):
        return text[1:-1].replace("\r", "")
    out = bytearray()
    body, i = text[1:-1], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8", "surrogatepass")
            i += 1
            continue
        piece, i = _unquote_escape(body, i + 1, '"')
        out += bytes([piece]) if isinstance(piece, int) else piece.encode("utf-8")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError("the string's \\x or octal escapes are not UTF-8 text") from error


def _unquote_char(text: str) -> int:
    """A character constant such as ``'a'`` or ``'\\n'``: its code point."""
    body = text[1:-1]
    if body.startswith("\\"):
        piece, end = _unquote_escape(body, 1, "'")
        if end != len(body):
            raise ValueError(f"malformed character constant: {text}")
        return piece if isinstance(piece, int) else ord(piece)
    if len(body) != 1:
        raise ValueError(f"malformed character constant: {text}")
    return ord(body)


_DIGITS = r"[0-9](?:_?[0-9])*"
_INTEGER = re.compile(
    r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+"
    r"|0(?:_?[0-7])*|[1-9](?:_?[0-9])*)"
)
_FLOAT = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")
_HEX_FLOAT = re.compile(
    r"[+-]?0[xX](?:_?[0-9a-fA-F])*(?:\.(?:[0-9a-fA-F](?:_?[0-9a-fA-F])*)?)?[pP][+-]?[0-9](?:_?[0-9])*"
)
_INT64: Final = 1 << 63


def _parse_integer(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-").replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXoObB":
        return sign * int(digits, 8)  # Go's legacy octal: 017 is 15
    return sign * int(digits, 0)


def _parse_number(text: str) -> int | float:
    """A number token's value as Go's template evaluates it (idealConstant)."""
    if text.endswith("i"):
        raise ValueError(f"complex numbers are not supported: {text}")
    if _INTEGER.fullmatch(text):
        value = _parse_integer(text)
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"{text} does not fit in a 64-bit integer")
        return value
    if _HEX_FLOAT.fullmatch(text):
        sign = -1.0 if text.startswith("-") else 1.0
        value_f = sign * float.fromhex(text.lstrip("+-").replace("_", ""))
    elif _FLOAT.fullmatch(text):
        value_f = float(text.replace("_", ""))
    else:
        raise ValueError(f"illegal number syntax: {text!r}")
    if not any(c in text for c in ".eEpP"):
        if text.lstrip("+-").startswith("0"):
            raise ValueError(f"illegal number syntax: {text} (a leading 0 means octal)")
        raise ValueError(f"{text} does not fit in a 64-bit integer")
    if math.isinf(value_f):
        raise ValueError(f"{text} is out of range for a 64-bit float")
    return value_f


# --- tree ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    pos: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Variable:
    pos: int
    name: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Chain:
    pos: int
    node: _Arg
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Dot:
    pos: int


@dataclass(frozen=True, slots=True)
class _Nil:
    pos: int


@dataclass(frozen=True, slots=True)
class _Literal:
    pos: int
    value: str | int | float | bool
    text: str


@dataclass(frozen=True, slots=True)
class _Identifier:
    pos: int
    name: str


@dataclass(frozen=True, slots=True)
class _Command:
    pos: int
    args: tuple[_Arg, ...]


@dataclass(frozen=True, slots=True)
class _Pipeline:
    pos: int
    decl: tuple[str, ...]
    is_assign: bool
    cmds: tuple[_Command, ...]


_Arg: TypeAlias = _Field | _Variable | _Chain | _Dot | _Nil | _Literal | _Identifier | _Pipeline


@dataclass(frozen=True, slots=True)
class _Text:
    pos: int
    text: str


@dataclass(frozen=True, slots=True)
class _Action:
    pos: int
    pipe: _Pipeline
    text: str  # the action as written, for messages


@dataclass(frozen=True, slots=True)
class _Branches:
    """``if``/``else if``/``else`` or ``with``/``else with``/``else``, flattened."""

    pos: int
    rebinds_dot: bool
    branches: tuple[tuple[_Pipeline, tuple[_Node, ...]], ...]
    otherwise: tuple[_Node, ...] | None


@dataclass(frozen=True, slots=True)
class _Range:
    pos: int
    pipe: _Pipeline
    body: tuple[_Node, ...]
    otherwise: tuple[_Node, ...] | None


@dataclass(frozen=True, slots=True)
class _Break:
    pos: int


@dataclass(frozen=True, slots=True)
class _Continue:
    pos: int


_Node: TypeAlias = _Text | _Action | _Branches | _Range | _Break | _Continue


@dataclass(frozen=True, slots=True)
class _End:
    pos: int


@dataclass(frozen=True, slots=True)
class _Else:
    pos: int
    keyword: _T | None  # IF or WITH for "else if"/"else with": that token is still unread


# --- parser --------------------------------------------------------------------

_COMMAND_START: Final = frozenset(
    {
        _T.BOOL,
        _T.CHAR_CONST,
        _T.COMPLEX,
        _T.DOT,
        _T.FIELD,
        _T.IDENT,
        _T.NUMBER,
        _T.NIL,
        _T.RAW_STRING,
        _T.STRING,
        _T.VAR,
        _T.LPAREN,
    }
)


def _show(token: _Token) -> str:
    if token.kind is _T.EOF:
        return "end of template"
    text = token.value if len(token.value) <= 20 else token.value[:20] + "..."
    return json.dumps(text, ensure_ascii=False)


class _Parser:
    """Go's text/template parser (parse/parse.go), producing the tree above."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.tokens = _Lexer(source).run()
        self.i = 0
        self.vars = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.action_start: int | None = None  # where the action being parsed begins

    def fail(self, pos: int, reason: str) -> NoReturn:
        start = self.action_start
        if start is not None and self.src.count("\n", start, pos):
            where = _error_at(self.src, start, "")
            reason += f" (in the action that starts with {{{{ at {where.line}:{where.column})"
        raise _error_at(self.src, pos, reason)

    # token access
    def next(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def backup(self) -> None:
        self.i -= 1

    def peek(self) -> _Token:
        return self.tokens[min(self.i, len(self.tokens) - 1)]

    def skip_spaces(self) -> None:
        while self.peek().kind is _T.SPACE:
            self.i += 1

    def next_non_space(self) -> _Token:
        self.skip_spaces()
        return self.next()

    def peek_non_space(self) -> _Token:
        self.skip_spaces()
        return self.peek()

    def unexpected(self, token: _Token, context: str) -> NoReturn:
        if token.kind is _T.ERROR:
            self.fail(token.pos, token.value)
        self.fail(token.pos, f"unexpected {_show(token)} in {context}")

    def expect_right(self, context: str) -> _Token:
        token = self.next_non_space()
        if token.kind is not _T.RIGHT:
            self.unexpected(token, context)
        return token

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.fail(pos, f"nested deeper than {MAX_NESTING} levels")

    # grammar
    def parse(self) -> tuple[_Node, ...]:
        root: list[_Node] = []
        while self.peek().kind is not _T.EOF:
            node = self.text_or_action()
            if isinstance(node, _End):
                self.fail(node.pos, "{{end}} without an open {{if}}, {{with}} or {{range}}")
            if isinstance(node, _Else):
                self.fail(node.pos, "{{else}} outside {{if}}, {{with}} or {{range}}")
            root.append(node)
        return tuple(root)

    def item_list(self, opener: _Token) -> tuple[tuple[_Node, ...], _End | _Else]:
        nodes: list[_Node] = []
        while self.peek_non_space().kind is not _T.EOF:
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                return tuple(nodes), node
            nodes.append(node)
        self.fail(opener.pos, f"{{{{{opener.value}}}}} is never closed: add {{{{end}}}}")

    def text_or_action(self) -> _Node | _End | _Else:
        token = self.next_non_space()
        if token.kind is _T.TEXT:
            return _Text(token.pos, token.value)
        if token.kind is _T.LEFT:
            self.action_start = token.pos
            try:
                return self.action(token)
            finally:
                self.action_start = None
        self.unexpected(token, "input")

    def action(self, left: _Token) -> _Node | _End | _Else:
        token = self.next_non_space()
        kind = token.kind
        if kind in (_T.TEMPLATE, _T.DEFINE, _T.BLOCK):
            self.fail(
                token.pos,
                f"{{{{{token.value}}}}} is not supported: a notification is a single template",
            )
        if kind in (_T.BREAK, _T.CONTINUE):
            self.expect_right(f"{{{{{token.value}}}}}")
            if self.range_depth == 0:
                self.fail(token.pos, f"{{{{{token.value}}}}} outside {{{{range}}}}")
            return _Break(token.pos) if kind is _T.BREAK else _Continue(token.pos)
        if kind is _T.ELSE:
            after = self.peek_non_space()
            if after.kind in (_T.IF, _T.WITH):
                return _Else(left.pos, after.kind)
            self.expect_right("{{else}}")
            return _Else(left.pos, None)
        if kind is _T.END:
            self.expect_right("{{end}}")
            return _End(left.pos)
        if kind in (_T.IF, _T.WITH, _T.RANGE):
            return self.control(token)
        self.backup()
        pos = self.peek().pos
        pipe = self.pipeline("command", _T.RIGHT)
        right = self.tokens[self.i - 1]
        return _Action(pos, pipe, self.src[left.pos : right.pos + len(right.value)])

    def control(self, opener: _Token) -> _Node:
        self.enter(opener.pos)
        scope = len(self.vars)
        context = opener.value
        pipe = self.pipeline(context, _T.RIGHT)
        if opener.kind is _T.RANGE:
            self.range_depth += 1
        body, after = self.item_list(opener)
        if opener.kind is _T.RANGE:
            self.range_depth -= 1
        branches = [(pipe, body)]
        otherwise: tuple[_Node, ...] | None = None
        while isinstance(after, _Else):
            if after.keyword is None:
                otherwise, end = self.item_list(opener)
                if isinstance(end, _Else):
                    self.fail(
                        end.pos, f"a second {{{{else}}}} in {{{{{context}}}}}: expected {{{{end}}}}"
                    )
                break
            if after.keyword is not opener.kind:
                keyword = after.keyword.value
                self.fail(
                    after.pos, f"{{{{else {keyword}}}}} is only allowed inside {{{{{keyword}}}}}"
                )
            self.next_non_space()  # the "if" or "with" after "else"
            branch_pipe = self.pipeline(context, _T.RIGHT)
            branch_body, after = self.item_list(opener)
            branches.append((branch_pipe, branch_body))
        del self.vars[scope:]
        self.depth -= 1
        if opener.kind is _T.RANGE:
            return _Range(opener.pos, pipe, body, otherwise)
        return _Branches(opener.pos, opener.kind is _T.WITH, tuple(branches), otherwise)

    def declarations(self, context: str) -> tuple[list[str], bool]:
        names: list[str] = []
        is_assign = False
        while self.peek_non_space().kind is _T.VAR:
            start = self.i
            variable = self.next()
            after = self.peek_non_space()
            if after.kind in (_T.ASSIGN, _T.DECLARE):
                self.next()
                is_assign = after.kind is _T.ASSIGN
                names.append(variable.value)
                self.vars.append(variable.value)
                break
            if after.kind is _T.CHAR and after.value == ",":
                self.next()
                names.append(variable.value)
                self.vars.append(variable.value)
                if context == "range" and len(names) < 2:
                    if self.peek_non_space().kind in (_T.VAR, _T.RIGHT, _T.RPAREN):
                        continue
                    self.fail(after.pos, "range can only initialize variables")
                self.fail(after.pos, f"too many declarations in {context}")
            self.i = start
            break
        if context == "range" and is_assign:
            self.fail(self.peek().pos, "range must declare its variables with :=, not =")
        return names, is_assign

    def pipeline(self, context: str, end: _T) -> _Pipeline:
        pos = self.peek_non_space().pos
        decl, is_assign = self.declarations(context)
        cmds: list[_Command] = []
        while True:
            token = self.next_non_space()
            if token.kind is end:
                break
            if token.kind not in _COMMAND_START:
                self.unexpected(token, context)
            self.backup()
            cmds.append(self.command())
        if not cmds:
            self.fail(pos, f"missing value for {context}")
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], _Literal | _Dot | _Nil):
                self.fail(cmd.pos, f"non executable command in pipeline stage {stage}")
        return _Pipeline(pos, tuple(decl), is_assign, tuple(cmds))

    def command(self) -> _Command:
        pos = self.peek_non_space().pos
        args: list[_Arg] = []
        while True:
            self.skip_spaces()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            token = self.next()
            if token.kind is _T.SPACE:
                continue
            if token.kind in (_T.RIGHT, _T.RPAREN):
                self.backup()
            elif token.kind is not _T.PIPE:
                self.unexpected(token, "operand")
            break
        if not args:
            self.fail(pos, "empty command")
        return _Command(pos, tuple(args))

    def operand(self) -> _Arg | None:
        node = self.term()
        if node is None or self.peek().kind is not _T.FIELD:
            return node
        names: list[str] = []
        while self.peek().kind is _T.FIELD:
            names.append(self.next().value[1:])
        if isinstance(node, _Field):
            return _Field(node.pos, node.names + tuple(names))
        if isinstance(node, _Variable):
            return _Variable(node.pos, node.name, node.names + tuple(names))
        if isinstance(node, _Literal | _Nil | _Dot):
            text = (
                node.text
                if isinstance(node, _Literal)
                else ("nil" if isinstance(node, _Nil) else ".")
            )
            self.fail(node.pos, f"unexpected . after term {text}")
        return _Chain(node.pos, node, tuple(names))

    def term(self) -> _Arg | None:
        token = self.next_non_space()
        kind = token.kind
        if kind is _T.IDENT:
            if token.value in _REFUSED_FUNCTIONS:
                reason = _REFUSED_FUNCTIONS[token.value]
                self.fail(token.pos, f'function "{token.value}" is not supported: {reason}')
            if token.value not in _FUNCTIONS:
                self.fail(
                    token.pos,
                    f'function "{token.value}" is not defined '
                    f"(the functions are {', '.join(_FUNCTIONS)})",
                )
            return _Identifier(token.pos, token.value)
        if kind is _T.DOT:
            return _Dot(token.pos)
        if kind is _T.NIL:
            return _Nil(token.pos)
        if kind is _T.VAR:
            if token.value not in self.vars:
                self.fail(token.pos, f'undefined variable "{token.value}"')
            return _Variable(token.pos, token.value)
        if kind is _T.FIELD:
            return _Field(token.pos, (token.value[1:],))
        if kind is _T.BOOL:
            return _Literal(token.pos, token.value == "true", token.value)
        if kind in (_T.NUMBER, _T.CHAR_CONST, _T.COMPLEX):
            return self.number(token)
        if kind in (_T.STRING, _T.RAW_STRING):
            try:
                return _Literal(token.pos, _unquote_string(token.value), token.value)
            except ValueError as error:
                self.fail(token.pos, f"bad string {token.value}: {error}")
        if kind is _T.LPAREN:
            self.enter(token.pos)
            pipe = self.pipeline("parenthesized pipeline", _T.RPAREN)
            self.depth -= 1
            return pipe
        self.backup()
        return None

    def number(self, token: _Token) -> _Literal:
        try:
            if token.kind is _T.CHAR_CONST:
                return _Literal(token.pos, _unquote_char(token.value), token.value)
            if token.kind is _T.COMPLEX:
                raise ValueError(f"complex numbers are not supported: {token.value}")
            return _Literal(token.pos, _parse_number(token.value), token.value)
        except ValueError as error:
            self.fail(token.pos, str(error))


# --- values ----------------------------------------------------------------------


class _Kind(enum.Enum):
    NIL = "nil"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    MAP = "mapping"
    LIST = "list"


def _kind(value: object) -> _Kind:
    if value is None:
        return _Kind.NIL
    if isinstance(value, bool):
        return _Kind.BOOL
    if isinstance(value, int):
        return _Kind.INT
    if isinstance(value, float):
        return _Kind.FLOAT
    if isinstance(value, str):
        return _Kind.STRING
    if isinstance(value, Mapping):
        return _Kind.MAP
    if isinstance(value, list | tuple):
        return _Kind.LIST
    raise TypeError(
        f"template data of type {type(value).__name__} is not supported: "
        "give str, int, float, bool, None, a mapping or a list"
    )


def _truth(value: object) -> bool:
    """Go's isTrue: zero values and empty things are false."""
    kind = _kind(value)
    if kind in (_Kind.STRING, _Kind.MAP, _Kind.LIST):
        return len(value) > 0  # type: ignore[arg-type]
    return bool(value)


def _go_digits(value: float, significant: int | None) -> tuple[str, int]:
    """Decimal digits of ``abs(value)`` (no trailing zeros) and where the point goes.

    ``significant=None`` gives the shortest digits that read back as the same
    float (what Go's strconv and Python's repr both compute); otherwise the
    value correctly rounded to that many significant digits.
    """
    if value == 0:
        return "", 0
    text = repr(abs(value)) if significant is None else f"{abs(value):.{significant - 1}e}"
    _sign, digit_tuple, exponent = Decimal(text).as_tuple()
    digits = "".join(map(str, digit_tuple))
    assert isinstance(exponent, int)
    stripped = digits.rstrip("0")
    point = len(digits) + exponent
    return stripped, point


def _format_e(digits: str, point: int, decimals: int, letter: str) -> str:
    first = digits[:1] or "0"
    text = first
    if decimals > 0:
        text += "." + digits[1 : 1 + decimals].ljust(decimals, "0")
    exponent = point - 1 if digits else 0
    sign = "-" if exponent < 0 else "+"
    return f"{text}{letter}{sign}{abs(exponent):02d}"


def _format_f(digits: str, point: int, decimals: int) -> str:
    integer = digits[:point].ljust(point, "0") if point > 0 else "0"
    if decimals <= 0:
        return integer
    fraction = "".join(
        digits[point + i] if 0 <= point + i < len(digits) else "0" for i in range(decimals)
    )
    return f"{integer}.{fraction}"


def _format_g(value: float, precision: int, upper: bool) -> str:
    """Go's strconv.FormatFloat(value, 'g', precision, 64) for a finite value."""
    shortest = precision < 0
    if not shortest and precision == 0:
        precision = 1
    digits, point = _go_digits(value, None if shortest else precision)
    count = len(digits)
    if shortest:
        precision = count
        exponent_limit = 6
    else:
        exponent_limit = precision
        if exponent_limit > count and count >= point:
            exponent_limit = count
    exponent = point - 1
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if exponent < -4 or exponent >= exponent_limit:
        decimals = min(precision, count) - 1
        return sign + _format_e(digits, point, decimals, "E" if upper else "e")
    if precision > point:
        precision = count
    return sign + _format_f(digits, point, max(precision - point, 0))


def _format_float_strconv(value: float, verb: str, precision: int) -> str:
    """Go's strconv.FormatFloat for the verbs e, E, f, g, G (sign included)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if verb in "gG":
        return _format_g(value, precision, verb == "G")
    return format(value, f".{precision}{verb}")


def _go_float(value: float) -> str:
    """How Go prints a float64 with %v: ``1.5``, ``1e+06``, ``+Inf``."""
    return _format_float_strconv(value, "g", -1)


def _is_print(char: str) -> bool:
    """Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols, ASCII space."""
    return char == " " or unicodedata.category(char)[0] in "LMNPS"


_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_quote(text: str, ascii_only: bool) -> str:
    """Go's strconv.Quote (or QuoteToASCII): a double-quoted Go string literal."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif _is_print(char) and (code < 0x80 or not ascii_only):
            out.append(char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class _Refused(Exception):
    """A builtin's complaint; the executor adds the position."""


def _print_value(value: object, *, nil: str) -> str:
    """A value as Go's fmt %v writes it; ``nil`` is how None reads."""
    kind = _kind(value)
    if kind is _Kind.NIL:
        return nil
    if kind is _Kind.STRING:
        return value  # type: ignore[return-value]
    if kind is _Kind.BOOL:
        return "true" if value else "false"
    if kind is _Kind.INT:
        return str(value)
    if kind is _Kind.FLOAT:
        return _go_float(value)  # type: ignore[arg-type]
    if kind is _Kind.MAP:
        names = _field_names(value)  # type: ignore[arg-type]
        raise _Refused(f"a mapping is not text: print one of its fields ({names})")
    raise _Refused("a list is not text: print its elements with range or index")


# --- printf ------------------------------------------------------------------------


@dataclass
class _Flags:
    minus: bool = False
    plus: bool = False
    space: bool = False
    zero: bool = False
    width: int | None = None
    precision: int | None = None

    def pad(self, text: str) -> str:
        if not self.width or len(text) >= self.width:
            return text
        fill = ("0" if self.zero else " ") * (self.width - len(text))
        return text + fill if self.minus else fill + text


def _parse_width(fmt: str, i: int, what: str) -> tuple[int | None, int]:
    start = i
    while i < len(fmt) and "0" <= fmt[i] <= "9":
        i += 1
    if i == start:
        return None, i
    number = int(fmt[start:i])
    if number > MAX_PRINTF_WIDTH:
        raise _Refused(f"printf {what} {number} is larger than {MAX_PRINTF_WIDTH}")
    return number, i


def _sprintf(fmt: str, args: Sequence[object]) -> str:
    """Go's fmt.Sprintf for the flags, widths and verbs the module docstring lists."""
    out: list[str] = []
    used = 0
    i = 0
    while True:
        percent = fmt.find("%", i)
        if percent < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:percent])
        flags = _Flags()
        i = percent + 1
        while i < len(fmt) and fmt[i] in "#0+- ":
            flag = fmt[i]
            if flag == "#":
                raise _Refused("printf flag # is not supported")
            if flag == "0":
                flags.zero = not flags.minus
            elif flag == "+":
                flags.plus = True
            elif flag == "-":
                flags.minus, flags.zero = True, False
            else:
                flags.space = True
            i += 1
        if i < len(fmt) and fmt[i] in "*[":
            raise _Refused(f"printf {fmt[i]} in {fmt[percent : i + 1]!r} is not supported")
        flags.width, i = _parse_width(fmt, i, "width")
        if i + 1 < len(fmt) and fmt[i] == ".":
            if fmt[i + 1] in "*[":
                raise _Refused(f"printf {fmt[i + 1]} in a precision is not supported")
            precision, i = _parse_width(fmt, i + 1, "precision")
            flags.precision = precision or 0
        if i >= len(fmt):
            raise _Refused(f"printf format ends inside the directive {fmt[percent:]!r}")
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if used >= len(args):
            raise _Refused(f"printf %{verb} has no argument left to format")
        if verb == "v":
            flags.plus = False
        out.append(_format_arg(verb, args[used], flags))
        used += 1
    if used < len(args):
        extra = len(args) - used
        raise _Refused(
            f"printf was given {extra} more argument{'s' * (extra > 1)} than its format uses"
        )
    return "".join(out)


def _format_arg(verb: str, value: object, flags: _Flags) -> str:
    kind = _kind(value)
    if kind is _Kind.NIL and verb == "v":
        return flags.pad("<nil>")
    if kind is _Kind.BOOL and verb in "tv":
        return flags.pad("true" if value else "false")
    if kind is _Kind.INT and verb in "vdxXob":
        return _format_integer(value, verb, flags)  # type: ignore[arg-type]
    if kind is _Kind.FLOAT and verb in "veEfFgG":
        return _format_float(value, verb, flags)  # type: ignore[arg-type]
    if kind is _Kind.STRING and verb in "vsqxX":
        return _format_string(value, verb, flags)  # type: ignore[arg-type]
    if kind in (_Kind.MAP, _Kind.LIST):
        _print_value(value, nil="")  # raises the explanation
    raise _Refused(f"printf %{verb} cannot format {_describe(value)}")


def _format_integer(value: int, verb: str, flags: _Flags) -> str:
    """Go's fmt.fmtInteger."""
    negative = value < 0
    magnitude = abs(value)
    base = {"x": 16, "X": 16, "o": 8, "b": 2}.get(verb, 10)
    minimum = 0
    if flags.precision is not None:
        minimum = flags.precision
        if minimum == 0 and magnitude == 0:
            return " " * (flags.width or 0)
    elif flags.zero and flags.width is not None:
        minimum = flags.width - (1 if negative or flags.plus or flags.space else 0)
    digits = {16: "x", 8: "o", 2: "b", 10: "d"}[base]
    text = format(magnitude, digits)
    if verb == "X":
        text = text.upper()
    text = text.rjust(minimum, "0")
    sign = "-" if negative else "+" if flags.plus else " " if flags.space else ""
    spaced = _Flags(minus=flags.minus, width=flags.width)
    return spaced.pad(sign + text)


def _format_float(value: float, verb: str, flags: _Flags) -> str:
    """Go's fmt.fmtFloat (without the # flag)."""
    if verb == "v":
        verb, precision = "g", -1
    elif verb in "gG":
        precision = -1
    else:
        precision = 6
        verb = "f" if verb == "F" else verb
    if flags.precision is not None:
        precision = flags.precision
    number = _format_float_strconv(value, verb, precision)
    if number[0] not in "+-":
        number = "+" + number
    if flags.space and number[0] == "+" and not flags.plus:
        number = " " + number[1:]
    if number[1] in "IN":
        if number[1] == "N" and not flags.space and not flags.plus:
            number = number[1:]
        return _Flags(minus=flags.minus, width=flags.width).pad(number)
    if flags.plus or number[0] != "+":
        if flags.zero and flags.width is not None and flags.width > len(number):
            return number[0] + "0" * (flags.width - len(number)) + number[1:]
        return flags.pad(number)
    return flags.pad(number[1:])


def _format_string(value: str, verb: str, flags: _Flags) -> str:
    if verb in "xX":  # Go's fmtSbx: the UTF-8 bytes in hex, spaced with the space flag
        data = _utf8(value)
        if flags.precision is not None:
            data = data[: flags.precision]
        text = data.hex(" ") if flags.space else data.hex()
        return flags.pad(text.upper() if verb == "X" else text)
    if flags.precision is not None:
        value = value[: flags.precision]
    if verb == "q":
        return flags.pad(_go_quote(value, ascii_only=flags.plus))
    return flags.pad(value)


# --- builtins ------------------------------------------------------------------------


def _basic(value: object) -> _Kind | None:
    kind = _kind(value)
    return kind if kind in (_Kind.BOOL, _Kind.INT, _Kind.FLOAT, _Kind.STRING) else None


def _describe(value: object) -> str:
    """A value's kind for an error message (never its text: that is the data's)."""
    kind = _kind(value)
    if kind is _Kind.NIL:
        return "nil"
    return f"an {kind.value}" if kind is _Kind.INT else f"a {kind.value}"


def _equal(left: object, right: object) -> bool:
    """Go's eq for one pair."""
    left_kind, right_kind = _basic(left), _basic(right)
    if left_kind is not right_kind:
        if left is None or right is None:
            return False
        raise _Refused(f"eq cannot compare {_describe(left)} with {_describe(right)}")
    if left_kind is not None:
        return left == right
    if left is None or right is None:
        return left is right
    raise _Refused(f"eq cannot compare {_describe(left)} with {_describe(right)}")


def _less(left: object, right: object, name: str) -> bool:
    """Go's lt: ordered kinds only, and only within one kind."""
    left_kind, right_kind = _basic(left), _basic(right)
    for kind, value in ((left_kind, left), (right_kind, right)):
        if kind is None or kind is _Kind.BOOL:
            raise _Refused(f"{name} cannot order {_describe(value)}")
    if left_kind is not right_kind:
        raise _Refused(f"{name} cannot compare {_describe(left)} with {_describe(right)}")
    return bool(left < right)  # type: ignore[operator]


def _fn_eq(args: Sequence[object]) -> object:
    if len(args) < 2:
        raise _Refused("eq needs at least two arguments to compare")
    return any(_equal(args[0], other) for other in args[1:])


def _fn_ne(args: Sequence[object]) -> object:
    return not _equal(args[0], args[1])


def _fn_lt(args: Sequence[object]) -> object:
    return _less(args[0], args[1], "lt")


def _fn_le(args: Sequence[object]) -> object:
    return _less(args[0], args[1], "le") or _equal(args[0], args[1])


def _fn_gt(args: Sequence[object]) -> object:
    return not (_less(args[0], args[1], "gt") or _equal(args[0], args[1]))


def _fn_ge(args: Sequence[object]) -> object:
    return not _less(args[0], args[1], "ge")


def _fn_not(args: Sequence[object]) -> object:
    return not _truth(args[0])


def _fn_len(args: Sequence[object]) -> object:
    value = args[0]
    kind = _kind(value)
    if kind is _Kind.STRING:
        return len(_utf8(value))  # type: ignore[arg-type]
    if kind in (_Kind.MAP, _Kind.LIST):
        return len(value)  # type: ignore[arg-type]
    raise _Refused(f"len of {_describe(value)}: len counts text, lists and mappings")


def _fn_index(args: Sequence[object]) -> object:
    item = args[0]
    if item is None:
        raise _Refused("index of nil")
    for key in args[1:]:
        kind = _kind(item)
        if kind is _Kind.MAP:
            if not isinstance(key, str):
                raise _Refused(f"index of a mapping needs a text key, not {_describe(key)}")
            if key not in item:  # type: ignore[operator]
                names = _field_names(item)  # type: ignore[arg-type]
                raise _Refused(f"index: the mapping has no key {_short_quote(key)} ({names})")
            item = item[key]  # type: ignore[index]
        elif kind in (_Kind.LIST, _Kind.STRING):
            sequence = _utf8(item) if kind is _Kind.STRING else item  # type: ignore[arg-type]
            if _kind(key) is not _Kind.INT:
                raise _Refused(f"index of a {kind.value} needs an integer, not {_describe(key)}")
            if not 0 <= key < len(sequence):  # type: ignore[operator, arg-type]
                raise _Refused(f"index out of range: {key} (length {len(sequence)})")  # type: ignore[arg-type]
            item = sequence[key]  # type: ignore[index]
        else:
            raise _Refused(f"cannot index {_describe(item)}")
    return item


def _short_quote(text: str) -> str:
    """A key for a message: one line, and short (it may come from the data)."""
    return json.dumps(text if len(text) <= 40 else text[:40] + "...", ensure_ascii=False)


def _sprint(args: Sequence[object]) -> str:
    """Go's fmt.Sprint: a space between two operands when neither is text."""
    out: list[str] = []
    previous_text = False
    for number, arg in enumerate(args):
        is_text = isinstance(arg, str)
        if number > 0 and not is_text and not previous_text:
            out.append(" ")
        out.append(_print_value(arg, nil="<nil>"))
        previous_text = is_text
    return "".join(out)


def _fn_print(args: Sequence[object]) -> object:
    return _sprint(args)


def _fn_println(args: Sequence[object]) -> object:
    return " ".join(_print_value(arg, nil="<nil>") for arg in args) + "\n"


def _fn_printf(args: Sequence[object]) -> object:
    return _sprintf(args[0], args[1:])  # type: ignore[arg-type]


def _escaper_text(args: Sequence[object]) -> str:
    """Go's evalArgs: one text argument as it is, else Sprint with nil as <no value>."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(["<no value>" if arg is None else arg for arg in args])


def _go_html(text: str) -> str:
    """Go's template.HTMLEscapeString."""
    return (
        text.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\0", "\ufffd")
    )


_JS_ESCAPES: Final = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _go_js(text: str) -> str:
    """Go's template.JSEscapeString."""
    out = []
    for char in text:
        code = ord(char)
        if char in _JS_ESCAPES:
            out.append(_JS_ESCAPES[char])
        elif code < 0x20:
            out.append(f"\\u00{code:02X}")
        elif code >= 0x80 and not _is_print(char):
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return "".join(out)


def _fn_html(args: Sequence[object]) -> object:
    return _go_html(_escaper_text(args))


def _fn_js(args: Sequence[object]) -> object:
    return _go_js(_escaper_text(args))


def _fn_urlquery(args: Sequence[object]) -> object:
    return urllib.parse.quote_plus(_escaper_text(args), safe="", errors="surrogatepass")


@dataclass(frozen=True)
class _Builtin:
    run: Callable[[Sequence[object]], object] | None  # None: and/or, evaluated lazily
    least: int
    most: int | None


_BUILTINS: Final = {
    "eq": _Builtin(_fn_eq, 1, None),
    "ne": _Builtin(_fn_ne, 2, 2),
    "lt": _Builtin(_fn_lt, 2, 2),
    "le": _Builtin(_fn_le, 2, 2),
    "gt": _Builtin(_fn_gt, 2, 2),
    "ge": _Builtin(_fn_ge, 2, 2),
    "not": _Builtin(_fn_not, 1, 1),
    "len": _Builtin(_fn_len, 1, 1),
    "index": _Builtin(_fn_index, 1, None),
    "print": _Builtin(_fn_print, 0, None),
    "println": _Builtin(_fn_println, 0, None),
    "printf": _Builtin(_fn_printf, 1, None),
    "html": _Builtin(_fn_html, 0, None),
    "js": _Builtin(_fn_js, 0, None),
    "urlquery": _Builtin(_fn_urlquery, 0, None),
    "and": _Builtin(None, 1, None),
    "or": _Builtin(None, 1, None),
}


def _field_names(mapping: Mapping[object, object]) -> str:
    names = sorted(str(key) for key in mapping)
    if not names:
        return "it has no fields"
    shown = ", ".join(names[:20])
    return f"it has {shown}" + (f" and {len(names) - 20} more" if len(names) > 20 else "")


# --- executor --------------------------------------------------------------------------

_MISSING: Final = object()  # no value piped into a command


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


@dataclass
class _Budget:
    """What one render (or one webhook body, all its strings) may still use."""

    steps: int = MAX_STEPS
    output: int = MAX_OUTPUT_LENGTH


@dataclass
class _Run:
    source: str
    context: Context
    budget: _Budget
    vars: list[list[object]] = field(default_factory=list)  # [name, value] pairs
    out: list[str] = field(default_factory=list)

    def fail(self, pos: int, reason: str) -> NoReturn:
        raise _error_at(self.source, pos, reason)

    def tick(self, pos: int) -> None:
        self.budget.steps -= 1
        if self.budget.steps < 0:
            self.fail(pos, f"the template took more than {MAX_STEPS} steps to render")

    def write(self, text: str, pos: int) -> None:
        self.budget.output -= len(text)
        if self.budget.output < 0:
            self.fail(pos, f"the output would be longer than {MAX_OUTPUT_LENGTH} characters")
        self.out.append(text)

    # statements
    def walk(self, dot: object, nodes: tuple[_Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.write(node.text, node.pos)
                continue
            self.tick(node.pos)
            if isinstance(node, _Action):
                self.action(dot, node)
            elif isinstance(node, _Branches):
                self.branches(dot, node)
            elif isinstance(node, _Range):
                self.range(dot, node)
            elif isinstance(node, _Break):
                raise _BreakLoop
            else:
                raise _ContinueLoop

    def action(self, dot: object, node: _Action) -> None:
        value = self.pipeline(dot, node.pipe)
        if node.pipe.decl:
            return
        try:
            text = _print_value(value, nil="<no value>")
        except _Refused as error:
            self.fail(node.pos, f"{node.text}: {error}")
        last = node.pipe.cmds[-1].args[0]
        trusted = isinstance(last, _Identifier) and last.name in self.context.trusts
        self.write(text if trusted else self.context.escape(text), node.pos)

    def branches(self, dot: object, node: _Branches) -> None:
        scope = len(self.vars)
        try:
            for pipe, body in node.branches:
                value = self.pipeline(dot, pipe)
                if _truth(value):
                    self.walk(value if node.rebinds_dot else dot, body)
                    return
            if node.otherwise is not None:
                self.walk(dot, node.otherwise)
        finally:
            del self.vars[scope:]

    def range(self, dot: object, node: _Range) -> None:
        scope = len(self.vars)
        try:
            value = self.pipeline(dot, node.pipe)
            kind = _kind(value)
            if kind is _Kind.LIST and value:
                self.loop(node, value)  # type: ignore[arg-type]
                return
            if kind not in (_Kind.LIST, _Kind.NIL):
                what = _describe(value)
                hint = " (range over its fields is not supported)" if kind is _Kind.MAP else ""
                self.fail(node.pos, f"range can only iterate over a list, not {what}{hint}")
            if node.otherwise is not None:
                self.walk(dot, node.otherwise)
        finally:
            del self.vars[scope:]

    def loop(self, node: _Range, items: Sequence[object]) -> None:
        scope = len(self.vars)
        for index, item in enumerate(items):
            self.tick(node.pos)  # an empty body still costs a pass
            if node.pipe.decl:
                self.vars[-1][1] = item
            if len(node.pipe.decl) > 1:
                self.vars[-2][1] = index
            try:
                self.walk(item, node.body)
            except _ContinueLoop:
                pass
            except _BreakLoop:
                return
            finally:
                del self.vars[scope:]

    # expressions
    def pipeline(self, dot: object, pipe: _Pipeline) -> object:
        value: object = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.is_assign:
                self.assign(name, value, pipe.pos)
            else:
                self.vars.append([name, value])
        return value

    def assign(self, name: str, value: object, pos: int) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.fail(pos, f"{name} = ...: {name} is not declared here (declare it with {name} := ...)")

    def variable(self, name: str, pos: int) -> object:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.fail(pos, f"undefined variable: {name}")

    def command(self, dot: object, cmd: _Command, final: object) -> object:
        self.tick(cmd.pos)
        first = cmd.args[0]
        has_args = len(cmd.args) > 1 or final is not _MISSING
        if isinstance(first, _Identifier):
            return self.call(dot, first, cmd.args[1:], final)
        if isinstance(first, _Field):
            return self.fields(first, first.names, dot, ".", has_args)
        if isinstance(first, _Chain):
            receiver = self.arg(dot, first.node)
            return self.fields(first, first.names, receiver, "(...)", has_args)
        if has_args:
            self.fail(first.pos, "only a function can be given arguments or a piped value")
        if isinstance(first, _Variable):
            value = self.variable(first.name, first.pos)
            return self.fields(first, first.names, value, first.name, False)
        if isinstance(first, _Pipeline):
            return self.pipeline(dot, first)
        if isinstance(first, _Nil):
            self.fail(first.pos, "nil is not a command")
        if isinstance(first, _Dot):
            return dot
        return first.value

    def fields(
        self,
        node: _Field | _Variable | _Chain,
        names: tuple[str, ...],
        receiver: object,
        path: str,
        has_args: bool,
    ) -> object:
        for number, name in enumerate(names):
            last = number == len(names) - 1
            receiver = self.field(node.pos, receiver, path, name, has_args and last)
            path = f"{path}{name}" if path == "." else f"{path}.{name}"
        return receiver

    def field(self, pos: int, receiver: object, path: str, name: str, has_args: bool) -> object:
        shown = "the data" if path == "." else path
        target = f"{path}{name}" if path == "." else f"{path}.{name}"
        if isinstance(receiver, Mapping):
            if has_args:
                self.fail(pos, f"{target} is a value; only a function can be given arguments")
            if name not in receiver:
                self.fail(
                    pos, f'{target}: {shown} has no field "{name}" ({_field_names(receiver)})'
                )
            return receiver[name]
        self.fail(pos, f"{target}: {shown} is {_describe(receiver)}, which has no fields")

    def arg(self, dot: object, node: _Arg) -> object:
        """An argument's value (Go's evalArg for an ``any`` parameter)."""
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Field):
            return self.fields(node, node.names, dot, ".", False)
        if isinstance(node, _Variable):
            value = self.variable(node.name, node.pos)
            return self.fields(node, node.names, value, node.name, False)
        if isinstance(node, _Pipeline):
            return self.pipeline(dot, node)
        if isinstance(node, _Identifier):
            return self.call(dot, node, (), _MISSING)
        receiver = self.arg(dot, node.node)
        return self.fields(node, node.names, receiver, "(...)", False)

    def call(
        self, dot: object, ident: _Identifier, nodes: tuple[_Arg, ...], final: object
    ) -> object:
        name = ident.name
        builtin = _BUILTINS[name]
        count = len(nodes) + (final is not _MISSING)
        if count < builtin.least or (builtin.most is not None and count > builtin.most):
            want = builtin.least if builtin.most == builtin.least else f"at least {builtin.least}"
            self.fail(ident.pos, f"wrong number of arguments for {name}: want {want}, got {count}")
        if builtin.run is None:
            return self.and_or(dot, name, nodes, final)
        args = [self.arg(dot, node) for node in nodes]
        if final is not _MISSING:
            args.append(final)
        if name == "printf" and not isinstance(args[0], str):
            self.fail(ident.pos, f"printf's format must be text, not {_describe(args[0])}")
        try:
            result = builtin.run(args)
        except _Refused as error:
            reason = str(error)
            self.fail(ident.pos, reason if reason.startswith(name) else f"{name}: {reason}")
        if isinstance(result, str) and len(result) > MAX_OUTPUT_LENGTH:
            self.fail(ident.pos, f"{name} made text longer than {MAX_OUTPUT_LENGTH} characters")
        return result

    def and_or(self, dot: object, name: str, nodes: tuple[_Arg, ...], final: object) -> object:
        value: object = None
        for node in nodes:
            value = self.arg(dot, node)
            if _truth(value) == (name == "or"):
                return value
        return value if final is _MISSING else final


# --- public API ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A parsed template: render it as often as needed."""

    source: str
    _root: tuple[_Node, ...] = field(repr=False)

    def render(self, data: Mapping[str, object], context: Context = PLAIN_TEXT) -> str:
        """The text for ``data``; :class:`TemplateError` if it cannot be rendered.

        Raises TypeError when ``data`` holds a value of a type the module
        docstring does not list (the caller's mistake, not the template's).
        """
        return self._render(data, context, _Budget())

    def _render(self, data: Mapping[str, object], context: Context, budget: _Budget) -> str:
        run = _Run(self.source, context, budget, vars=[["$", data]])
        run.walk(data, self._root)
        return "".join(run.out)


@functools.lru_cache(maxsize=512)
def compile_template(source: str) -> Template:
    """Parse ``source`` (cached); :class:`TemplateError` if it is not a valid template.

    Call it where a template is accepted, to refuse a bad one before any run
    needs it.
    """
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(
            f"the template is {len(source)} characters long; "
            f"at most {MAX_TEMPLATE_LENGTH} are allowed"
        )
    if "{{" not in source:
        return Template(source, (_Text(0, source),) if source else ())
    return Template(source, _Parser(source).parse())


def render(source: str, data: Mapping[str, object], context: Context = PLAIN_TEXT) -> str:
    """Render a template (compiled once and cached) against ``data`` in ``context``."""
    return compile_template(source).render(data, context)


# --- webhook bodies ----------------------------------------------------------------------------


class _Number(str):
    """A JSON number as the template spelt it, written back unchanged."""


@dataclass(frozen=True, slots=True)
class _Pairs:
    """A JSON object's members in order, duplicates kept (so they can be refused)."""

    pairs: tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class _JsonText:
    template: Template
    where: str


@dataclass(frozen=True, slots=True)
class _JsonArray:
    items: tuple[_JsonNode, ...]


@dataclass(frozen=True, slots=True)
class _JsonObject:
    members: tuple[tuple[_JsonText, _JsonNode], ...]
    where: str


_JsonNode: TypeAlias = _JsonText | _JsonArray | _JsonObject | _Number | bool | None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _compile_json_text(text: str, where: str) -> _JsonText:
    try:
        return _JsonText(compile_template(text), where)
    except TemplateError as error:
        raise error.at(where) from None


def _compile_json(value: object, where: str, depth: int) -> _JsonNode:
    if depth > MAX_NESTING:
        raise TemplateError(f"the body nests arrays and objects deeper than {MAX_NESTING} levels")
    if isinstance(value, str) and not isinstance(value, _Number):
        return _compile_json_text(value, where or "the body")
    if isinstance(value, list):
        return _JsonArray(
            tuple(_compile_json(item, f"{where}[{n}]", depth + 1) for n, item in enumerate(value))
        )
    if isinstance(value, _Pairs):
        members = []
        for key, item in value.pairs:
            path = f"{where}.{key}" if where else key
            members.append(
                (_compile_json_text(key, f"the key {path!r}"), _compile_json(item, path, depth + 1))
            )
        return _JsonObject(tuple(members), where or "the body's object")
    assert value is None or isinstance(value, bool | _Number)
    return value


def _json_string(text: str) -> str:
    return '"' + _json_string_body(text) + '"'


@dataclass(frozen=True)
class JsonBodyTemplate:
    """A webhook body template, parsed: see :func:`render_json_body`."""

    source: str
    _tree: _JsonNode | None = field(repr=False)  # None: not JSON, render as one text
    _text: Template | None = field(repr=False)

    @property
    def is_json(self) -> bool:
        """Whether the template was JSON, each of its strings rendered on its own."""
        return self._text is None

    def render(self, data: Mapping[str, object]) -> str:
        budget = _Budget()
        if self._text is not None:
            return self._text._render(data, JSON_STRING, budget)
        out: list[str] = []
        self._write(self._tree, data, budget, out)
        return "".join(out)

    def _write(
        self, node: _JsonNode, data: Mapping[str, object], budget: _Budget, out: list[str]
    ) -> None:
        if isinstance(node, _JsonText):
            out.append(_json_string(self._text_of(node, data, budget)))
        elif isinstance(node, _Number):
            out.append(str.__str__(node))
        elif node is None or isinstance(node, bool):
            out.append(json.dumps(node))
        elif isinstance(node, _JsonArray):
            out.append("[")
            for number, item in enumerate(node.items):
                out.append(", " if number else "")
                self._write(item, data, budget, out)
            out.append("]")
        else:
            self._write_object(node, data, budget, out)

    def _write_object(
        self, node: _JsonObject, data: Mapping[str, object], budget: _Budget, out: list[str]
    ) -> None:
        seen: set[str] = set()
        out.append("{")
        for number, (key, value) in enumerate(node.members):
            name = self._text_of(key, data, budget)
            if name in seen:
                raise TemplateError(f"two keys of {node.where} render to the same name {name!r}")
            seen.add(name)
            out.append(", " if number else "")
            out.append(_json_string(name) + ": ")
            self._write(value, data, budget, out)
        out.append("}")

    @staticmethod
    def _text_of(node: _JsonText, data: Mapping[str, object], budget: _Budget) -> str:
        try:
            return node.template._render(data, PLAIN_TEXT, budget)
        except TemplateError as error:
            raise error.at(node.where) from None


def _load_json(text: str) -> object:
    return json.loads(
        text,
        object_pairs_hook=lambda pairs: _Pairs(tuple(pairs)),
        parse_int=_Number,
        parse_float=_Number,
        parse_constant=_refuse_constant,
    )


@functools.lru_cache(maxsize=256)
def compile_json_body(template: str) -> JsonBodyTemplate:
    """Parse a webhook body template (cached); :class:`TemplateError` if invalid."""
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(
            f"the body is {len(template)} characters long; "
            f"at most {MAX_TEMPLATE_LENGTH} are allowed"
        )
    try:
        document = _load_json(template)
    except RecursionError:
        raise TemplateError(
            f"the body nests arrays and objects deeper than {MAX_NESTING} levels"
        ) from None
    except ValueError:
        return JsonBodyTemplate(template, None, compile_template(template))
    return JsonBodyTemplate(template, _compile_json(document, "", 0), None)


def render_json_body(template: str, data: Mapping[str, object]) -> str:
    """A webhook body: valid JSON whatever the data holds, when the template is JSON.

    When ``template`` parses as JSON (as the Flyte SDK's ``json.dumps`` of a
    body dict does), every string in it, keys and values at any depth, is
    rendered as a template in plain text and the document is written again as
    JSON (numbers, true, false and null as they were). Otherwise the whole
    text is rendered with :data:`JSON_STRING` escaping.
    """
    return compile_json_body(template).render(data)
