"""HL7 escape sequences: turn one leaf value into plain text, and plain text back into wire form."""

from __future__ import annotations

from .msh import Delimiters


def _hex(body: str, charset: str) -> str | None:
    """``\\Xhh..\\`` payload decoded in the message charset (latin-1 if it does not fit); None if bad."""
    if not body or len(body) % 2:
        return None
    try:
        data = bytes.fromhex(body)
    except ValueError:
        return None
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return data.decode("latin-1")


def _count(arg: str) -> int:
    arg = arg.strip()
    if arg.startswith("+"):
        arg = arg[1:]
    return min(int(arg), 100) if arg.isdigit() else 1


def _formatting(cmd: str) -> str | None:
    """Formatted-text (FT) commands such as ``.br`` and ``.sp 2``; None when not one of them."""
    name, arg = cmd[:3], cmd[3:]
    if name == ".br":
        return "\n" if not arg.strip() else None
    if name == ".sp":
        return "\n" * max(_count(arg), 1) if arg.strip() else "\n"
    if name == ".sk":
        return " " * _count(arg) if arg.strip() else " "
    if name in (".in", ".ti"):
        return ""
    if name in (".fi", ".nf"):
        return "" if not arg.strip() else None
    if name == ".ce":
        return "\n" if not arg.strip() else None
    return None


def unescape(value: str, delimiters: Delimiters, charset: str = "ascii") -> str:
    """Resolve escape sequences in one leaf value (split first, unescape last).

    Known: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\``, ``\\Xhh..\\`` (hex, in the message charset),
    highlighting ``\\H\\``/``\\N\\`` (dropped) and formatting commands (``\\.br\\`` → newline ...).
    Anything else, and an escape character without a closing one, is kept literally.
    """
    esc = delimiters.escape
    if not esc or esc not in value:
        return value
    simple = {
        "F": delimiters.field, "S": delimiters.component, "T": delimiters.subcomponent,
        "R": delimiters.repetition, "E": esc, "P": delimiters.truncation or "#",
        "H": "", "N": "",
    }
    out: list[str] = []
    pos = 0
    n = len(value)
    while pos < n:
        start = value.find(esc, pos)
        if start < 0:
            out.append(value[pos:])
            break
        end = value.find(esc, start + 1)
        if end < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:start])
        body = value[start + 1:end]
        replacement: str | None
        if len(body) == 1:
            replacement = simple.get(body)
        elif body[:1] == "X":
            replacement = _hex(body[1:], charset)
        elif body[:1] == ".":
            replacement = _formatting(body)
        else:
            replacement = None
        if replacement is None:
            if body[:1].isalpha() and " " not in body:
                # A well-formed but unknown sequence (``\\Zxx\\``, ``\\C2842\\``): keep it whole.
                out.append(value[start:end + 1])
                pos = end + 1
            else:
                # A lone escape character in text: keep it and go on right after it, so that
                # the next one can still open a real sequence.
                out.append(esc)
                pos = start + 1
            continue
        out.append(replacement)
        pos = end + 1
    return "".join(out)


def escape(text: str, delimiters: Delimiters) -> str:
    """Wire form of plain text: delimiters become ``\\F\\`` ``\\S\\`` ..., CR/LF ``\\X0D\\``/``\\X0A\\``."""
    esc = delimiters.escape or "\\"
    table = {esc: f"{esc}E{esc}"}
    for char, code in ((delimiters.field, "F"), (delimiters.component, "S"),
                       (delimiters.subcomponent, "T"), (delimiters.repetition, "R"),
                       (delimiters.truncation, "P")):
        if char:
            table[char] = f"{esc}{code}{esc}"
    table["\r"] = f"{esc}X0D{esc}"
    table["\n"] = f"{esc}X0A{esc}"
    if not any(c in text for c in table):
        return text
    return text.translate(str.maketrans(table))
