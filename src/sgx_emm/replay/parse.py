"""Parsing a replay line: numbers, flag names, addresses, data, and the op table.

Each line is parsed on its own, so a bad line is reported with its number and
(unless strict) does not stop the run. Flag names live in separate namespaces so
that a prot name in an alloc's flags (READ = 0x1 = RESERVE) is an error, not a
surprise.
"""

from __future__ import annotations

import errno as _errno
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sgx_emm import flags as F
from sgx_emm.errors import SGX_RESULT_NAMES
from sgx_emm.replay.ops import HANDLER_KINDS, OPS

MAX_U64 = (1 << 64) - 1

class LineError(ValueError):
    """A line the runner cannot run: malformed, unknown op, bad field, bad reference."""


def parse_number(value: object, what: str) -> int:
    """A JSON integer or a hex/decimal string, as an unsigned 64-bit value."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LineError(f"{what}: expected a number or a hex/decimal string, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            n = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError:
            raise LineError(f"{what}: {value!r} is not a number") from None
    else:
        n = value
    if not 0 <= n <= MAX_U64:
        raise LineError(f"{what}: {n} is not an unsigned 64-bit value")
    return n


def _short_names(prefix: str, names: Iterable[str]) -> dict[str, int]:
    """Full names and the same names without `prefix` (PROT_READ and READ)."""
    out: dict[str, int] = {}
    for name in names:
        out[name] = F.FLAG_NAMES[name]
        if name.startswith(prefix):
            out[name[len(prefix):]] = F.FLAG_NAMES[name]
    return out


_ALLOC_FLAG_NAMES = list(F.AllocFlags.__members__)
_PAGE_TYPE_NAMES = list(F.PageType.__members__)
_PROT_NAMES = [name for name in F.FLAG_NAMES if name.startswith("PROT_")]

#: Names each kind of field accepts. Namespaces are kept apart so that a prot
#: name in an alloc's flags (READ = 0x1 = RESERVE) is an error, not a surprise.
NAMESPACES: dict[str, dict[str, int]] = {
    "flags": {
        **_short_names("", _ALLOC_FLAG_NAMES),
        **_short_names("PAGE_TYPE_", _PAGE_TYPE_NAMES),
    },
    "prot": _short_names("PROT_", _PROT_NAMES),
    "type": _short_names("PAGE_TYPE_", _PAGE_TYPE_NAMES),
}

_ALIGNED = re.compile(r"ALIGNED\s*\(\s*(\d+)\s*\)\Z")


def parse_flags(value: object, what: str, kind: str) -> int:
    """An integer, or `|`-joined names of `kind` ("flags", "prot" or "type").

    Names are the `sgx_emm.flags` names with or without their prefix, in any
    case; pieces may also be numbers, and alloc flags may use ALIGNED(n).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_number(value, what)
    if not isinstance(value, str) or not value.strip():
        raise LineError(f"{what}: expected flag names or a number, got {value!r}")
    names = NAMESPACES[kind]
    total = 0
    for raw in value.split("|"):
        piece = raw.strip().upper()
        if not piece:
            raise LineError(f"{what}: empty flag name in {value!r}")
        if piece in names:
            total |= names[piece]
        elif piece[0].isdigit():
            total |= parse_number(piece, what)
        elif kind == "flags" and (m := _ALIGNED.match(piece)):
            total |= F.aligned(int(m.group(1)))
        else:
            other = [k for k, table in NAMESPACES.items() if k != kind and piece in table]
            hint = f" (it is a {other[0]} name)" if other else ""
            raise LineError(f"{what}: unknown {kind} name {raw.strip()!r}{hint}")
    return total


@dataclass(frozen=True, slots=True)
class Address:
    """An address as written: absolute, `u+OFF`, `b+OFF` or `$N[+OFF]`."""

    kind: str  # "abs", "user", "base", "line"
    offset: int  # the absolute value for "abs"; signed offset otherwise
    ref: int | None = None  # line number for "line"
    text: str = ""

    def __str__(self) -> str:
        return self.text


_REF = re.compile(r"\$(\d+)\s*(?:([+-])\s*(\S+))?\Z")
_REL = re.compile(r"([ub])\s*(?:([+-])\s*(\S+))?\Z", re.IGNORECASE)


def parse_address(value: object, what: str, line: int, nullable: bool = False) -> Address | None:
    """Parse an address field; `$N` must name an earlier line."""
    if value is None:
        if nullable:
            return None
        raise LineError(f"{what}: an address is required here (null means anywhere only "
                        "for alloc)")
    if isinstance(value, str):
        text = value.strip()
        if m := _REF.match(text):
            ref = int(m.group(1))
            if ref >= line:
                raise LineError(f"{what}: {text} names line {ref}, which is not an earlier line")
            return Address("line", _signed(m.group(2), m.group(3), what), ref, text)
        if m := _REL.match(text):
            kind = "user" if m.group(1).lower() == "u" else "base"
            return Address(kind, _signed(m.group(2), m.group(3), what), None, text)
    n = parse_number(value, what)
    return Address("abs", n, None, str(value))


def _signed(sign: str | None, number: str | None, what: str) -> int:
    if number is None:
        return 0
    n = parse_number(number, what)
    return -n if sign == "-" else n


def parse_data(value: object, what: str) -> bytes:
    """Bytes written by a `write` line: a hex string (spaces allowed)."""
    if not isinstance(value, str):
        raise LineError(f"{what}: expected a hex string, got {value!r}")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise LineError(f"{what}: {value!r} is not a hex string") from None
    if not data:
        raise LineError(f"{what}: no bytes to write")
    return data


#: Keys any line may carry besides its op's fields.
COMMON_KEYS = {"op", "thread", "expect", "note"}


@dataclass(frozen=True, slots=True)
class Call:
    """One parsed line: the op, its decoded arguments, and where it runs."""

    line: int
    op: str
    args: dict[str, Any]
    thread: int = 0
    expect: str | None = None
    note: str | None = None


#: Results a line may name in "expect" besides errno and SGX code names.
RESULT_WORDS = ("ABORT", "CRASH", "CONTINUE_EXECUTION", "CONTINUE_SEARCH")


def parse_expect(value: object) -> str:
    """An "expect" value: 0 (or another number), an errno name such as EINVAL, an SGX
    code name, or one of RESULT_WORDS. Unknown names are refused, so a typo cannot
    make every line "unexpected"."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LineError(f'"expect" must be 0 or a result name, got {value!r}')
    text = str(value).strip()
    if isinstance(value, int) or text.isdigit():
        return str(int(text))
    if (text in RESULT_WORDS or text in _errno.errorcode.values()
            or text in SGX_RESULT_NAMES.values()):
        return text
    raise LineError(f'"expect": unknown result name {text!r} (use 0, an errno name such '
                    "as EINVAL, an SGX code name such as SGX_PAGE_ATTRIBUTES_MISMATCH, "
                    f"or one of {', '.join(RESULT_WORDS)})")


def parse_line(text: str, line: int) -> Call | None:
    """Parse one JSON Lines line; None for a blank line. Raises LineError."""
    text = text.lstrip("\ufeff")  # a UTF-8 byte order mark: text, not JSON
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise LineError(f"malformed JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise LineError("malformed JSON: nested too deeply (a call is one flat object)"
                        ) from None
    return parse_call(obj, line)


def parse_call(obj: object, line: int) -> Call:
    """Decode one call object (the JSON value of a line)."""
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {type(obj).__name__}")
    op = obj.get("op")
    if not isinstance(op, str):
        raise LineError('missing "op"' if op is None else f'"op" must be a string, got {op!r}')
    fields = OPS.get(op)
    if fields is None:
        raise LineError(f"unknown op {op!r}")
    unknown = sorted(set(obj) - set(fields) - COMMON_KEYS)
    if unknown:
        raise LineError(f"{op}: unknown field(s) {', '.join(map(repr, unknown))}")
    args: dict[str, Any] = {}
    for name, kind in fields.items():
        optional = kind.endswith("=")
        kind = kind.rstrip("=")
        if name not in obj:
            if optional:
                continue
            raise LineError(f'{op}: missing field "{name}"')
        args[name] = _parse_field(obj[name], f"{op}.{name}", kind, line)
    thread = parse_number(obj["thread"], "thread") if "thread" in obj else 0
    expect = obj.get("expect")
    note = obj.get("note")
    if note is not None and not isinstance(note, str):
        raise LineError(f'"note" must be a string, got {note!r}')
    return Call(line, op, args, thread, None if expect is None else parse_expect(expect),
                note)


def _parse_field(value: object, what: str, kind: str, line: int) -> Any:
    if kind in ("addr", "addr?"):
        return parse_address(value, what, line, nullable=kind == "addr?")
    if kind in ("size", "number"):
        return parse_number(value, what)
    if kind in NAMESPACES:
        return parse_flags(value, what, kind)
    if kind == "bytes":
        return parse_data(value, what)
    if kind == "bool":
        if not isinstance(value, bool):
            raise LineError(f"{what}: expected true or false, got {value!r}")
        return value
    if kind == "handler":
        if value not in HANDLER_KINDS:
            raise LineError(f"{what}: unknown handler {value!r} (use "
                            + " or ".join(map(repr, HANDLER_KINDS)) + ")")
        return value
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise LineError(f"{what}: expected a non-empty string, got {value!r}")
        return value.strip()
    raise AssertionError(kind)  # pragma: no cover - ops.py lists the kinds
