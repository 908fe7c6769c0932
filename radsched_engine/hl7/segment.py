"""One segment of the lazy view: fields split on first use, leaves unescaped only when read."""

from __future__ import annotations

from typing import NamedTuple

from .escape import unescape
from .msh import Delimiters


def _pick(value: str, sep: str, n: int) -> str:  # shared with message.py
    """Item ``n`` (1-based) of ``value`` split on ``sep``; "" when absent."""
    if sep in value:
        parts = value.split(sep)
        return parts[n - 1] if 0 < n <= len(parts) else ""
    return value if n == 1 else ""


_ABSENT = "\r"    # stands in for a delimiter the message does not define: never inside a segment


class _Context(NamedTuple):
    """What every segment of one message shares: delimiters (absent ones as ``_ABSENT``) and charset."""

    delimiters: Delimiters
    charset: str
    repetition: str
    component: str
    subcomponent: str
    escape: str

    @classmethod
    def of(cls, d: Delimiters, charset: str) -> _Context:
        key = (id(d), charset)             # by identity: sniff_msh hands out memoised ones
        context = _CONTEXTS.get(key)
        if context is None or context.delimiters is not d:
            context = cls(d, charset, d.repetition or _ABSENT, d.component or _ABSENT,
                          d.subcomponent or _ABSENT, d.escape or _ABSENT)
            if len(_CONTEXTS) >= 256:           # few distinct (delimiters, charset) pairs
                _CONTEXTS.clear()
            _CONTEXTS[key] = context
        return context


_CONTEXTS: dict[tuple[int, str], _Context] = {}


class Segment:
    """One segment, split into fields on first use; ``get`` returns unescaped leaf text."""

    __slots__ = ("_cache", "_ctx", "_fields", "_msh", "id", "index", "text")

    def __init__(self, seg_id: str, index: int, text: str, context: _Context) -> None:
        self.id = seg_id
        self.index = index
        self.text = text
        self._ctx = context
        self._fields: list[str] | None = None
        self._cache: dict[object, list[str]] | None = None
        self._msh = seg_id == "MSH"

    def __repr__(self) -> str:
        return f"<Segment {self.id} #{self.index}>"

    @property
    def delimiters(self) -> Delimiters:
        return self._ctx.delimiters

    @property
    def fields(self) -> list[str]:
        """The raw split on the field separator (item 0 is the segment id; MSH is shifted by one)."""
        f = self._fields
        if f is None:
            f = self._fields = self.text.split(self._ctx.delimiters.field)
        return f

    def __len__(self) -> int:
        """The number of the last field present."""
        return len(self.fields) - (0 if self._msh else 1)

    def field(self, n: int) -> str:
        """Raw (escaped) field ``n``; MSH-1 is the field separator itself. "" when absent."""
        f = self._fields
        if f is None:
            f = self._fields = self.text.split(self._ctx.delimiters.field)
        if self._msh:
            if n == 1:
                return self._ctx.delimiters.field
            n -= 1
        return f[n] if 0 < n < len(f) else ""

    def repetitions(self, n: int) -> list[str]:
        """Raw repetitions of field ``n`` ([] when empty)."""
        value = self.field(n)
        if not value:
            return []
        rep = self._ctx.repetition
        if (self._msh and n <= 2) or rep not in value:
            return [value]
        return value.split(rep)

    def raw(self, n: int, component: int | None = None, subcomponent: int | None = None,
            repetition: int = 1) -> str:
        """The escaped text at field ``n`` (whole field when ``component`` is None)."""
        value = self.field(n)
        if not value or (self._msh and n <= 2):
            return value
        ctx = self._ctx
        if component is None:
            return value if repetition == 1 else _pick(value, ctx.repetition, repetition)
        value = _pick(value, ctx.repetition, repetition)
        value = _pick(value, ctx.component, component)
        return value if subcomponent is None else _pick(value, ctx.subcomponent, subcomponent)

    def get(self, n: int, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """Unescaped leaf text of field ``n``, repetition, component, subcomponent (all 1-based)."""
        if self._msh and n <= 2:
            return self.field(n)
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        key: object = n if repetition == 1 else (n, repetition)
        comps = cache.get(key)
        ctx = self._ctx
        if comps is None:
            f = self._fields
            if f is None:
                f = self._fields = self.text.split(ctx.delimiters.field)
            k = n - 1 if self._msh else n
            value = f[k] if 0 < k < len(f) else ""
            if ctx.repetition in value or repetition != 1:
                value = _pick(value, ctx.repetition, repetition)
            comps = cache[key] = value.split(ctx.component) if ctx.component in value else [value]
        if not 0 < component <= len(comps):
            return ""
        value = comps[component - 1]
        if not value:
            return value
        if ctx.subcomponent in value:
            value = _pick(value, ctx.subcomponent, subcomponent)
        elif subcomponent != 1:
            return ""
        if ctx.escape in value:
            return unescape(value, ctx.delimiters, ctx.charset)
        return value
