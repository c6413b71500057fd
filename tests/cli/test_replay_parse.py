"""Parsing replay lines: numbers, flag names, addresses, fields (replay-format.md)."""

from __future__ import annotations

import pytest

from sgx_emm import flags as F
from sgx_emm.replay import (
    Address,
    LineError,
    parse_address,
    parse_call,
    parse_flags,
    parse_line,
    parse_number,
    read_lines,
)


@pytest.mark.parametrize("value, expected", [
    (8192, 8192), ("0x2000", 0x2000), ("0X2000", 0x2000), ("8192", 8192), (" 16 ", 16),
    (0, 0), ("0xffffffffffffffff", (1 << 64) - 1),
])
def test_numbers_are_ints_or_hex_or_decimal_strings(value: object, expected: int) -> None:
    assert parse_number(value, "size") == expected


@pytest.mark.parametrize("value", ["", "0x", "12ab", "ten", -1, 1 << 64, True, None, 1.5,
                                   [1]])
def test_bad_numbers_are_line_errors_naming_the_field(value: object) -> None:
    with pytest.raises(LineError, match="size"):
        parse_number(value, "size")


@pytest.mark.parametrize("text, kind, expected", [
    ("COMMIT_ON_DEMAND|GROWSUP", "flags", 0x24),
    ("commit_now | fixed", "flags", 0x42),
    ("RESERVE|SS_FIRST", "flags", 0x501),
    ("COMMIT_NOW|PAGE_TYPE_SS_REST|ALIGNED(16)", "flags", 0x602 | (16 << 24)),
    ("READ|EXEC", "prot", 5),
    ("PROT_READ|PROT_WRITE", "prot", 3),
    ("READ_WRITE_EXEC", "prot", 7),
    ("NONE", "prot", 0),
    ("TCS", "type", 0x100),
    ("PAGE_TYPE_TRIM", "type", 0x400),
    ("READ|0x8", "prot", 9),
])
def test_flag_names_with_and_without_prefix(text: str, kind: str, expected: int) -> None:
    assert parse_flags(text, "f", kind) == expected


def test_integer_flags_pass_through_unchecked() -> None:
    # the manager, not the parser, decides whether odd bits are EINVAL
    assert parse_flags(0x1234, "f", "flags") == 0x1234


@pytest.mark.parametrize("text, kind, message", [
    ("COMMIT_LATER", "flags", "unknown flags name 'COMMIT_LATER'"),
    ("READ", "flags", "it is a prot name"),
    ("COMMIT_NOW", "prot", "it is a flags name"),
    ("READ||WRITE", "prot", "empty flag name"),
    ("", "prot", "expected flag names"),
    ("PENDING", "prot", "unknown prot name"),
])
def test_bad_flag_names_are_line_errors(text: str, kind: str, message: str) -> None:
    with pytest.raises(LineError, match=message.replace("(", r"\(")):
        parse_flags(text, "f", kind)


def test_addresses_in_every_form() -> None:
    assert parse_address(None, "a", 3, nullable=True) is None
    assert parse_address("0x7f0000010000", "a", 3) == Address("abs", 0x7F0000010000, None,
                                                               "0x7f0000010000")
    assert parse_address(4096, "a", 3) == Address("abs", 4096, None, "4096")
    got = parse_address("u+0x40000", "a", 3)
    assert got is not None and (got.kind, got.offset) == ("user", 0x40000)
    got = parse_address("b+0x1000", "a", 3)
    assert got is not None and (got.kind, got.offset) == ("base", 0x1000)
    got = parse_address("$2+0x1000", "a", 3)
    assert got is not None and (got.kind, got.ref, got.offset) == ("line", 2, 0x1000)
    got = parse_address("$0", "a", 3)
    assert got is not None and (got.kind, got.ref, got.offset) == ("line", 0, 0)
    got = parse_address("$1-16", "a", 3)
    assert got is not None and got.offset == -16


@pytest.mark.parametrize("value, message", [
    (None, "an address is required"),
    ("$3", "not an earlier line"),
    ("$7+0x10", "not an earlier line"),
    ("$1+zz", "not a number"),
    ("u+", "not a number"),
    ("somewhere", "not a number"),
])
def test_bad_addresses(value: object, message: str) -> None:
    with pytest.raises(LineError, match=message):
        parse_address(value, "a", 3)


def test_a_line_decodes_every_field() -> None:
    call = parse_line('{"op": "commit_data", "addr": "$3", "size": "0x1000", "data": "$2", '
                      '"prot": "READ", "thread": 2, "expect": "EACCES"}', 5)
    assert call is not None
    assert call.op == "commit_data" and call.line == 5 and call.thread == 2
    assert call.args["size"] == 0x1000 and call.args["prot"] == F.PROT_READ
    assert call.args["addr"].ref == 3 and call.args["data"].ref == 2
    assert call.expect == "EACCES"


def test_optional_fields() -> None:
    call = parse_call({"op": "alloc", "size": 4096, "flags": "RESERVE"}, 0)
    assert "addr" not in call.args and call.thread == 0 and call.expect is None
    call = parse_call({"op": "fault", "addr": "u+0", "write": True, "errcd": "0x8007"}, 0)
    assert call.args["write"] is True and call.args["errcd"] == 0x8007
    call = parse_call({"op": "write", "addr": "u+0", "data": "ff 00"}, 0)
    assert call.args["data"] == b"\xff\x00"
    call = parse_call({"op": "alloc", "size": 4096, "flags": "COMMIT_ON_DEMAND",
                       "handler": "commit", "note": "why"}, 0)
    assert call.args["handler"] == "commit"


def test_every_op_of_the_spec_is_known() -> None:
    ops = ["alloc", "dealloc", "commit", "uncommit", "commit_data", "modify_permissions",
           "modify_type", "read", "write", "fetch", "fault", "mm_alloc", "mm_dealloc",
           "mm_commit", "mm_uncommit", "mm_commit_data", "mm_modify_type",
           "mm_modify_permissions", "mm_init_ema"]
    from sgx_emm.replay import OPS
    from sgx_emm.services.replay_ops import OPS as SERVICE_OPS
    assert sorted(OPS) == sorted(ops + list(SERVICE_OPS) + ["attack"])  # + the attack op


@pytest.mark.parametrize("text, message", [
    ('{"op": "alloc", "size": 4096', "malformed JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"size": 4096}', 'missing "op"'),
    ('{"op": 3}', '"op" must be a string'),
    ('{"op": "mremap", "addr": null}', "unknown op 'mremap'"),
    ('{"op": "commit", "addr": "u+0"}', 'commit: missing field "size"'),
    ('{"op": "commit", "addr": "u+0", "size": 1, "szie": 2}', "unknown field"),
    ('{"op": "alloc", "size": 4096, "flags": "COMMIT_LATER"}', "unknown flags name"),
    ('{"op": "alloc", "size": 4096, "flags": "RESERVE", "handler": "retry"}',
     "unknown handler 'retry'"),
    ('{"op": "commit", "addr": null, "size": 4096}', "an address is required"),
    ('{"op": "write", "addr": "u+0", "data": "xyz"}', "not a hex string"),
    ('{"op": "write", "addr": "u+0", "data": ""}', "no bytes"),
    ('{"op": "fault", "addr": "u+0", "write": 1}', "expected true or false"),
    ('{"op": "read", "addr": "u+0", "size": 1, "expect": [0]}', '"expect"'),
    ('{"op": "read", "addr": "u+0", "size": 1, "expect": true}', '"expect"'),
    ('{"op": "read", "addr": "u+0", "size": 1, "thread": "x"}', "thread"),
])
def test_bad_lines_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(LineError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_line(text, 4)


def test_blank_lines_are_not_calls_but_keep_their_number() -> None:
    assert parse_line("   ", 0) is None
    assert read_lines('{"a":1}\n\n{"b":2}\r\n') == ['{"a":1}', "", '{"b":2}']


# Any JSON at all: a line either parses or is a LineError, never anything else.
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sgx_emm.replay import OPS  # noqa: E402

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                     st.floats(allow_nan=False, width=32), st.text(max_size=8),
                     st.sampled_from(["0x1000", "u+0x10", "$0", "$1+0x8", "b+4", "READ|WRITE",
                                      "COMMIT_NOW|FIXED", "TCS", "ff00", "commit", "skip",
                                      "ALIGNED(13)", "0x", "$", "u+-1"]))
_values = st.one_of(_scalars, st.lists(_scalars, max_size=2),
                    st.dictionaries(st.text(max_size=3), _scalars, max_size=2))
_keys = st.sampled_from(["op", "addr", "size", "flags", "prot", "type", "data", "write",
                         "errcd", "handler", "thread", "expect", "note", "bogus"])


@given(st.sampled_from(sorted(OPS)), st.dictionaries(_keys, _values, max_size=7),
       st.integers(0, 5))
def test_any_object_parses_or_is_a_line_error(op: str, fields: dict[str, object],
                                              line: int) -> None:
    obj = {"op": op, **fields} if "op" not in fields else fields
    try:
        call = parse_call(obj, line)
    except LineError as e:
        assert str(e)
    else:
        assert call.op == obj["op"] and call.line == line


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_line_error(text: str) -> None:
    try:
        parse_line(text, 3)
    except LineError as e:
        assert str(e)
