"""Character set decision for one message: MSH-18, then configured default, then UTF-8, then a fallback."""

from __future__ import annotations

import codecs
import re

# HL7 table 0211 values (and the spellings seen in the wild), normalised by ``_norm``.
_TABLE_0211: dict[str, str] = {
    "ASCII": "ascii",
    "USASCII": "ascii",
    "UNICODEUTF8": "utf-8",
    "UNICODE": "utf-8",          # ambiguous in the table; senders using it send UTF-8 in practice
    "UTF8": "utf-8",
    "UNICODEUTF16": "utf-16",
    "UTF16": "utf-16",
    "UNICODEUTF32": "utf-32",
    "UTF32": "utf-32",
    "ISOIR6": "ascii",
    "ISOIR100": "iso8859-1",
    "ISOIR87": "iso2022_jp",
    "ISOIR159": "iso2022_jp_2",
    "GB180302000": "gb18030",
    "GB18030": "gb18030",
    "KSX1001": "euc_kr",
    "BIG5": "big5",
    "LATIN1": "iso8859-1",
    "WINDOWS1252": "cp1252",
    "CP1252": "cp1252",
}
for _n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15):
    _TABLE_0211[f"8859{_n}"] = f"iso8859-{_n}"
    _TABLE_0211[f"ISO8859{_n}"] = f"iso8859-{_n}"

# Python codecs we are willing to use when a name is not in the table (no str-to-str transforms).
_ALLOWED_PREFIXES = ("utf", "ascii", "latin", "iso8859", "cp", "gb", "big5", "euc", "shift_jis",
                     "iso2022", "koi8", "mac")
_SINGLE_BYTE_PREFIXES = ("ascii", "latin", "iso8859", "cp", "koi8", "mac")
_NORM = re.compile(r"[\s_\-/.]+")
_CACHE: dict[str, str | None] = {}


def _norm(name: str) -> str:
    return _NORM.sub("", name).upper()


def lookup(name: str) -> str | None:
    """The Python codec for an HL7 (table 0211) or common charset name; None when unknown/empty."""
    if not name:
        return None
    try:
        return _CACHE[name]
    except KeyError:
        pass
    codec = _TABLE_0211.get(_norm(name))
    if codec is None:
        try:
            info = codecs.lookup(name.strip())
        except (LookupError, ValueError):
            info = None
        if info is not None and info.name.startswith(_ALLOWED_PREFIXES):
            codec = info.name
    if len(_CACHE) < 1024:
        _CACHE[name] = codec
    return codec


def require(name: str) -> str:
    """Like ``lookup`` but raising ``ValueError`` for an unknown name (for configuration checks)."""
    codec = lookup(name)
    if codec is None:
        raise ValueError(f"unknown character set {name!r}")
    return codec


def _label(declared: str) -> str:
    """A short, printable form of a declared charset name for notes (MSH-18 is not patient data)."""
    text = "".join(c for c in declared if c.isprintable() and c.isascii())[:24]
    return text.replace(" ", "_") or "?"


def _strict(body: bytes, codec: str) -> str | None:
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode(body: bytes, declared: str, default: str | None = None,
           fallback: str = "cp1252") -> tuple[str, str, str]:
    """Decode a message body; returns ``(text, codec, note)``.

    Order: MSH-18 if recognised, then the configured ``default``, then strict UTF-8, then
    ``fallback`` (latin-1 when even that fails). A declared or configured single-byte charset
    whose bytes are in fact valid non-ASCII UTF-8 is read as UTF-8. ``note`` is ``""`` when the
    declaration (or configuration) held, otherwise one of ``undeclared-utf8``,
    ``unrecognised-charset-utf8``,
    ``declared-<name>-but-utf8``, ``configured-<name>-but-utf8``, ``fallback-<codec>``.
    """
    declared_codec = lookup(declared)
    if body.isascii():
        return body.decode("ascii"), declared_codec or (default and lookup(default)) or "ascii", ""
    tried: str = ""
    for source, name in (("declared", declared), ("configured", default)):
        codec = lookup(name) if name else None
        if codec is None:
            continue
        tried = tried or f"{source}-{_label(name)}"
        if codec != "utf-8" and codec.startswith(_SINGLE_BYTE_PREFIXES):
            text = _strict(body, "utf-8")
            if text is not None:
                return text, "utf-8", f"{source}-{_label(name)}-but-utf8"
        text = _strict(body, codec)
        if text is not None:
            return text, codec, ""
        if codec == "utf-8":
            break                       # declared UTF-8 but invalid: go straight to the fallback
    else:
        text = _strict(body, "utf-8")
        if text is not None:
            if tried:
                return text, "utf-8", f"{tried}-but-utf8"
            return text, "utf-8", "unrecognised-charset-utf8" if declared else "undeclared-utf8"
    fb = lookup(fallback) or "cp1252"
    text = _strict(body, fb)
    if text is None:
        fb = "latin-1"
        text = body.decode(fb)
    return text, fb, f"fallback-{fb}"
