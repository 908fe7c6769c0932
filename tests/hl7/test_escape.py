"""Escape sequences: every known kind, unknown ones kept, and escape/unescape round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radsched_engine.hl7.escape import escape, unescape
from radsched_engine.hl7.msh import Delimiters

STD = Delimiters()
CUSTOM = Delimiters.from_msh("#", "!@%*")


@pytest.mark.parametrize(("wire", "text"), [
    ("plain", "plain"),
    ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
    ("\\X0D0A\\", "\r\n"),
    ("caf\\XE9\\", "café"),                       # hex in the message charset (latin-1 here)
    ("line\\.br\\next", "line\nnext"),
    ("a\\.sp 2\\b", "a\n\nb"),
    ("a\\.sk 3\\b", "a   b"),
    ("\\.ce\\title", "\ntitle"),
    ("\\.in 4\\x\\.ti -2\\y\\.fi\\\\.nf\\", "xy"),
    ("\\H\\bold\\N\\", "bold"),
    ("keep \\Zabc\\ this", "keep \\Zabc\\ this"),   # locally defined: kept as sent
    ("keep \\C2842\\ this", "keep \\C2842\\ this"),
    ("bad hex \\XZZ\\", "bad hex \\XZZ\\"),
    ("odd hex \\X0\\", "odd hex \\X0\\"),
    ("C:\\ dir \\F\\ x", "C:\\ dir | x"),         # a lone escape char is data; the next one still works
    ("unterminated \\F", "unterminated \\F"),
    ("\\P\\", "#"),
])
def test_unescape(wire: str, text: str) -> None:
    assert unescape(wire, STD, "iso8859-1") == text


def test_unescape_hex_in_utf8_and_invalid_bytes() -> None:
    assert unescape("\\XC3A9\\", STD, "utf-8") == "é"
    assert unescape("\\XE9\\", STD, "utf-8") == "é"          # not UTF-8: read as latin-1


def test_custom_escape_character() -> None:
    assert unescape("a%F%b%S%c%E%", CUSTOM) == "a#b!c%"
    assert escape("a#b!c%", CUSTOM) == "a%F%b%S%c%E%"


def test_no_escape_character_means_no_escapes() -> None:
    d = Delimiters.from_msh("|", "^~&")
    assert d.escape == "" and unescape("a\\F\\b", d) == "a\\F\\b"


@given(st.text())
def test_escape_round_trip(text: str) -> None:
    for d in (STD, CUSTOM):
        wire = escape(text, d)
        assert not any(c in wire for c in (d.field, d.component, d.repetition, d.subcomponent, "\r"))
        assert unescape(wire, d, "utf-8") == text


@given(st.text())
def test_unescape_never_fails(text: str) -> None:
    assert isinstance(unescape(text, STD, "utf-8"), str)
