"""The charset cascade: MSH-18, configured default, strict UTF-8, fallback — and the notes it leaves."""

from __future__ import annotations

import pytest

from radsched_engine.hl7.charset import decode, lookup, require


@pytest.mark.parametrize(("name", "codec"), [
    ("ASCII", "ascii"), ("8859/1", "iso8859-1"), ("8859/15", "iso8859-15"), ("UNICODE UTF-8", "utf-8"),
    ("UTF-8", "utf-8"), ("utf8", "utf-8"), ("ISO-8859-1", "iso8859-1"), ("latin-1", "iso8859-1"),
    ("cp1252", "cp1252"), ("GB 18030-2000", "gb18030"), ("ISO IR87", "iso2022_jp"),
    ("KS X 1001", "euc_kr"), ("BIG-5", "big5"), ("UNICODE UTF-16", "utf-16"),
])
def test_lookup(name: str, codec: str) -> None:
    assert lookup(name) == codec


@pytest.mark.parametrize("name", ["", "KLINGON", "rot13", "base64", "CNS 11643-1992"])
def test_unknown_names(name: str) -> None:
    assert lookup(name) is None
    if name:
        with pytest.raises(ValueError):
            require(name)


def test_ascii_body_keeps_the_declaration() -> None:
    assert decode(b"abc", "8859/1") == ("abc", "iso8859-1", "")
    assert decode(b"abc", "") == ("abc", "ascii", "")
    assert decode(b"abc", "", "8859/2") == ("abc", "iso8859-2", "")


def test_notes() -> None:
    utf8 = "Zoë".encode()
    assert decode(utf8, "") == ("Zoë", "utf-8", "undeclared-utf8")
    assert decode(utf8, "FOO") == ("Zoë", "utf-8", "unrecognised-charset-utf8")
    assert decode(utf8, "8859/1") == ("Zoë", "utf-8", "declared-8859/1-but-utf8")
    assert decode(utf8, "", "8859/1") == ("Zoë", "utf-8", "configured-8859/1-but-utf8")
    assert decode(b"Zo\xeb", "8859/1") == ("Zoë", "iso8859-1", "")
    assert decode(b"Zo\xeb", "UNICODE UTF-8") == ("Zoë", "cp1252", "fallback-cp1252")
    assert decode(b"Zo\xeb", "", None, "8859/15") == ("Zoë", "iso8859-15", "fallback-iso8859-15")
    assert decode(b"\x81", "", None, "cp1252") == ("\x81", "latin-1", "fallback-latin-1")
