"""The ``validate`` stage: message type, processing id, version, required parts and timestamp syntax."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import pipeline
from ..errors import Location, Reject
from ..exchange import Exchange
from ..hl7.message import Message, Path, parse_path
from ..hl7.segment_ids import is_valid_id
from ..hl7.timestamps import is_timestamp

DEFAULT_VERSIONS = ("2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8")
DEFAULT_REQUIRED: dict[str, list[str]] = {
    "SIU": ["SCH", "SCH-1|SCH-2", "PID", "PID-3"],
    "ORM": ["ORC", "ORC-1", "PID-3"],
    "OMI": ["ORC", "ORC-1", "PID-3"],
}
# Times the engine relies on (appointment and resource start/end, order times). Birth dates are
# left out on purpose: a bad PID-7 is stored as unknown with a warning, not refused.
DEFAULT_TIMESTAMPS = ("TQ1-7", "TQ1-8", "SCH-11.4", "SCH-11.5", "AIS-4", "AIG-8", "AIL-6",
                      "AIP-6")


def _path_check(entry: str) -> str | None:
    for alt in entry.split("|"):
        alt = alt.strip()
        if is_valid_id(alt):
            continue
        try:
            parse_path(alt)
        except ValueError as exc:
            return str(exc)
    return None


def _required_check(value: dict[str, list[str]]) -> str | None:
    for key, entries in value.items():
        code = key.partition("^")[0]
        if not (len(code) == 3 and code.isalnum()) and key != "*":
            return f"required: key {key!r} is not a message type (SIU, ORM, SIU^S12 or *)"
        for entry in entries:
            problem = _path_check(entry)
            if problem:
                return f"required[{key}]: {problem}"
    return None


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    """What a message must carry to be accepted; the accepted types come from the channel's ``accept``."""

    versions: tuple[str, ...] = field(default=DEFAULT_VERSIONS, metadata={
        "doc": "Accepted HL7 versions (MSH-12); any other version is answered AR 203."})
    default_version: str | None = field(default=None, metadata={
        "doc": "Version assumed when MSH-12 is empty (truncated MSH); unset = AR 203."})
    processing_ids: tuple[str, ...] = field(default=("P", "T", "D"), metadata={
        "doc": "Accepted processing ids (MSH-11.1); any other is answered AR 202."})
    default_processing_id: str | None = field(default=None, metadata={
        "doc": "Processing id assumed when MSH-11 is empty; unset = AR 202."})
    required: dict[str, list[str]] = field(default_factory=lambda: {
        k: list(v) for k, v in DEFAULT_REQUIRED.items()}, metadata={
        "doc": "Required segments and fields per message type (`SIU`, `ORM`, `SIU^S12`, `*` = "
               "all): a segment id (`SCH`), a path (`PID-3`, `SCH-11.4`) or alternatives "
               "(`SCH-1|SCH-2`). Keys given here replace the defaults for that key.",
        "check": _required_check})
    timestamps: list[str] = field(default_factory=lambda: list(DEFAULT_TIMESTAMPS), metadata={
        "doc": "Paths that must hold a well-formed HL7 timestamp when they are not empty "
               "(checked in every occurrence of the segment); otherwise AE 102.",
        "each": _path_check})


@dataclass(frozen=True, slots=True)
class _Rule:
    """One compiled ``required`` entry: alternatives that are segment ids or paths."""

    entry: str
    alternatives: tuple[str | Path, ...]


def _compile(entries: list[str]) -> tuple[_Rule, ...]:
    rules = []
    for entry in entries:
        alts: list[str | Path] = []
        for alt in entry.split("|"):
            alt = alt.strip()
            alts.append(alt if is_valid_id(alt) else parse_path(alt))
        rules.append(_Rule(entry, tuple(alts)))
    return tuple(rules)


def _has_data(value: str, strip: str) -> bool:
    """A value has data when it is not empty, not only delimiters/blanks and not ``""``."""
    if not value:
        return False
    stripped = value.strip(strip)
    return bool(stripped) and stripped != '""'


def _values(message: Message, p: Path) -> list[str]:
    """The raw value at ``p`` in every occurrence of its segment."""
    if p.depth == 1:
        return message.values(p.segment, p.field, None, p.repetition if p.explicit_rep else None)
    values = message.values(p.segment, p.field, p.component, p.repetition)
    if p.depth == 3:
        sub = message.delimiters.subcomponent or "\r"
        values = [_pick_sub(v, sub, p.subcomponent) if v else v for v in values]
    return values


def _blanks(message: Message) -> str:
    d = message.delimiters
    return " " + d.component + d.repetition + d.subcomponent


def _location(p: Path, sequence: int) -> Location:
    return Location(p.segment, sequence, p.field, p.repetition,
                    p.component if p.depth > 1 else None, p.subcomponent if p.depth == 3 else None)


def _name(p: Path) -> str:
    return str(_location(p, 1))


# Timestamp texts already found well formed (slot times repeat across messages); bounded.
_GOOD_TIMES: set[str] = set()


@dataclass(frozen=True, slots=True)
class _Plan:
    """The required-field and timestamp checks of one message type, grouped by segment.

    ``passes`` answers only "is everything fine?" with one field split per segment; any doubt
    sends the message through the precise checks, which name the error and its location.
    """

    segments: tuple[str, ...]                                    # must be present
    checks: tuple[tuple[str, tuple[tuple[int, int, int, int], ...], int, int], ...]
    # per segment id: ((field, component or 0, kind, group), ...), number of groups, last field
    # kind 0: required in every occurrence; 1: one of a group; 2: timestamp when present

    @classmethod
    def compile(cls, rules: tuple[_Rule, ...], timestamps: tuple[tuple[str, tuple[Path, ...]], ...],
                code: str) -> _Plan | None:
        segments: list[str] = []
        per_seg: dict[str, list[tuple[int, int, int, int]]] = {}
        groups: dict[str, int] = {}
        for rule in rules:
            alts = rule.alternatives
            if all(isinstance(a, str) for a in alts):
                if len(alts) != 1:
                    return None
                segments.append(alts[0])                           # type: ignore[arg-type]
                continue
            paths = [a for a in alts if not isinstance(a, str)]
            if len(paths) != len(alts) or len({p.segment for p in paths}) != 1:
                return None
            for p in paths:
                if p.depth == 3 or p.explicit_rep or p.occurrence != 1 or p.segment == "MSH":
                    return None
            seg = paths[0].segment
            segments.append(seg)
            if len(paths) == 1:
                p = paths[0]
                per_seg.setdefault(seg, []).append((p.field, p.component if p.depth == 2 else 0, 0, 0))
            else:
                gid = groups[seg] = groups.get(seg, 0) + 1
                for p in paths:
                    per_seg.setdefault(seg, []).append(
                        (p.field, p.component if p.depth == 2 else 0, 1, gid))
        for seg, paths in timestamps:
            for p in paths:
                if p.depth == 3 or p.repetition != 1 or p.occurrence != 1 or seg == "MSH":
                    return None
                per_seg.setdefault(seg, []).append((p.field, p.component, 2, 0))
        checks = tuple((seg, tuple(items), groups.get(seg, 0), max(i[0] for i in items))
                       for seg, items in per_seg.items())
        return cls(tuple(dict.fromkeys(segments)), checks)

    def passes(self, message: Message) -> bool:
        for seg in self.segments:
            if not message.has(seg):
                return False
        d = message.delimiters
        rep, comp, sub = d.repetition, d.component, d.subcomponent
        blanks = " " + comp + rep + sub
        seen: set[str] = set()
        for seg, items, n_groups, last in self.checks:
            for fields in message.split_fields(seg, last + 1):      # ([] when absent)
                satisfied = 0
                count = len(fields)
                for n, c, kind, gid in items:
                    value = fields[n] if n < count else ""
                    if not value:
                        if kind == 0:
                            return False
                        continue
                    if c or kind == 2:
                        if rep and rep in value:
                            value = value.split(rep, 1)[0]
                        if comp and comp in value:
                            parts = value.split(comp)
                            value = parts[(c or 1) - 1] if (c or 1) <= len(parts) else ""
                        elif (c or 1) != 1:
                            value = ""
                    if kind == 2:
                        if value and value not in seen:
                            if sub and sub in value:
                                return False           # let the precise check pick the part
                            if value not in _GOOD_TIMES:
                                if not is_timestamp(value):
                                    return False
                                if len(_GOOD_TIMES) >= 4096:
                                    _GOOD_TIMES.clear()
                                _GOOD_TIMES.add(value)
                            seen.add(value)
                        continue
                    if _has_data(value, blanks):
                        if kind == 1:
                            satisfied |= 1 << gid
                    elif kind == 0:
                        return False
                if n_groups and satisfied != (1 << (n_groups + 1)) - 2:
                    return False
        return True


class ValidateStage:
    """Refuses messages this channel does not take (AR 200-203) or that lack what it needs (AE)."""

    def __init__(self, options: ValidateOptions, resources: pipeline.Resources) -> None:
        self.options = options
        accept = getattr(resources.settings, "accept", None)
        self._any_type = not accept
        self._types = {a.partition("^")[0].strip() for a in accept or ()}
        self._type_triggers = {a.strip() for a in accept or ()}
        self._versions = frozenset(options.versions)
        self._processing = frozenset(options.processing_ids)
        merged = {k: list(v) for k, v in DEFAULT_REQUIRED.items()}
        merged.update(options.required)
        self._required = {key: _compile(entries) for key, entries in merged.items()}
        by_segment: dict[str, list[Path]] = {}
        for text in options.timestamps:
            path = parse_path(text)
            by_segment.setdefault(path.segment, []).append(path)
        self._timestamps = tuple((seg_id, tuple(paths)) for seg_id, paths in by_segment.items())
        self._rules_cache: dict[str, tuple[_Rule, ...]] = {}
        self._plans: dict[str, _Plan | None] = {}
        self._headers_ok: dict[tuple[str, ...], str] = {}

    async def __call__(self, exchange: Exchange) -> None:
        message = exchange.message
        if message is None:
            raise Reject(100, "validate needs the parse stage before it", "MSH")
        self._check_header(message, exchange)
        plan = self._plans.get(message.type_trigger)
        if plan is None:
            plan = self._plan(message)
        if plan is not None and plan.passes(message):
            return                     # the common case: one split per segment, nothing missing
        # Something is missing or malformed (or the rules are unusual): the precise checks say
        # which, with the ERR location.
        for rule in self._rules(message.message_code, message.type_trigger):
            self._check_rule(message, rule)
        self._check_timestamps(message)

    def _plan(self, message: Message) -> _Plan | None:
        plan = _Plan.compile(self._rules(message.message_code, message.type_trigger),
                             self._timestamps, message.message_code)
        if len(self._plans) < 256:
            self._plans[message.type_trigger] = plan
        return plan

    def _check_header(self, message: Message, exchange: Exchange) -> None:
        fields = message.header.fields
        # Delimiters, MSH-9, MSH-11 and MSH-12 as sent, once they passed: the version they mean.
        key = fields[1:3] + fields[9:10] + fields[11:13]
        version = self._headers_ok.get(key)
        if version is None:
            version = self._check_type_and_version(message)
            if len(self._headers_ok) >= 256:
                self._headers_ok.clear()
            self._headers_ok[key] = version
        exchange.data["hl7_version"] = version
        if not message.control_id.strip():
            raise Reject(101, "message control id (MSH-10) is missing", Location("MSH", 1, 10))

    def _check_type_and_version(self, message: Message) -> str:
        """MSH-9 against ``accept``, MSH-11 and MSH-12 against the options; the version used."""
        code, trigger = message.message_code, message.trigger
        if not self._any_type:
            if code not in self._types:
                raise Reject(200, f"message type {code or '(empty)'} is not accepted on this channel",
                             Location("MSH", 1, 9, 1, 1))
            full = f"{code}^{trigger}"
            if full not in self._type_triggers and f"{code}^*" not in self._type_triggers \
                    and code not in self._type_triggers:
                raise Reject(201, f"event {full if trigger else code + ' without a trigger'} is not "
                                  "accepted on this channel", Location("MSH", 1, 9, 1, 2))
        processing = message.processing_id or self.options.default_processing_id or ""
        if processing not in self._processing:
            raise Reject(202, f"processing id {processing or '(empty)'} is not accepted (accepted: "
                              f"{', '.join(self.options.processing_ids)})", Location("MSH", 1, 11, 1, 1))
        version = message.version or self.options.default_version or ""
        if version not in self._versions:
            raise Reject(203, f"HL7 version {version or '(empty)'} is not accepted (accepted: "
                              f"{', '.join(self.options.versions)})", Location("MSH", 1, 12, 1, 1))
        return version

    def _rules(self, code: str, type_trigger: str) -> tuple[_Rule, ...]:
        rules = self._rules_cache.get(type_trigger)
        if rules is None:
            req = self._required
            rules = req.get("*", ()) + req.get(code, ()) + (
                req.get(type_trigger, ()) if type_trigger != code else ())
            if len(self._rules_cache) < 256:
                self._rules_cache[type_trigger] = rules
        return rules

    @staticmethod
    def _check_rule(message: Message, rule: _Rule) -> None:
        alts = rule.alternatives
        first = alts[0]
        if len(alts) == 1:
            if isinstance(first, str):
                if not message.has(first):
                    raise Reject(100, f"required segment {first} is missing", Location(first))
                return
            values = _values(message, first)
            if not values:
                raise Reject(101, f"required field {_name(first)} is missing (no {first.segment} "
                                  "segment)", _location(first, 1))
            blanks = _blanks(message)
            for seq, value in enumerate(values, 1):     # every occurrence (each ORC needs ORC-1 ...)
                if not _has_data(value, blanks):
                    raise Reject(101, f"required field {_name(first)} is missing", _location(first, seq))
            return
        seg_id = first if isinstance(first, str) else first.segment
        for occurrence in range(1, max(message.count(seg_id), 1) + 1):
            if any(_satisfied(message, alt, occurrence) for alt in alts):
                continue
            names = " or ".join(a if isinstance(a, str) else _name(a) for a in alts)
            paths = [a for a in alts if not isinstance(a, str)]
            if not paths:
                raise Reject(100, f"required segment {names} is missing", Location(seg_id))
            target = paths[0]
            seq = occurrence if message.count(target.segment) >= occurrence else 1
            where = "" if message.has(target.segment) else f" (no {target.segment} segment)"
            raise Reject(101, f"required field {names} is missing{where}", _location(target, seq))

    def _check_timestamps(self, message: Message) -> None:
        checked: set[str] = set()        # the same time is often repeated (SCH, AIS, AIL, AIP ...)
        sub = message.delimiters.subcomponent or "\r"
        for seg_id, paths in self._timestamps:
            if not message.has(seg_id):
                continue
            for p in paths:
                values = message.values(seg_id, p.field, p.component, p.repetition)
                for seq, value in enumerate(values, 1):
                    if not value or value in checked:
                        continue
                    if sub in value or p.subcomponent != 1:
                        value = _pick_sub(value, sub, p.subcomponent)
                    if not is_timestamp(value):
                        raise Reject(102, f"{_name(p)} is not a valid HL7 date/time "
                                          "(expected YYYYMMDD[HHMM[SS]][+/-ZZZZ])", _location(p, seq))
                    checked.add(value)


def _pick_sub(value: str, sep: str, n: int) -> str:
    parts = value.split(sep)
    return parts[n - 1] if n <= len(parts) else ""


def _satisfied(message: Message, alt: str | Path, occurrence: int) -> bool:
    if isinstance(alt, str):
        return message.has(alt)
    values = _values(message, alt)
    if not values:
        return False
    value = values[occurrence - 1] if occurrence <= len(values) else values[0]
    return _has_data(value, _blanks(message))


SPEC = pipeline.register(pipeline.StageSpec(
    name="validate",
    summary="Check MSH-9/11/12 against the channel (AR 200-203), MSH-10, required segments and "
            "fields (AE 100/101) and timestamp syntax (AE 102).",
    options=ValidateOptions,
    factory=ValidateStage,
    example="""\
- validate:
    default_version: "2.3"          # for senders with a truncated MSH
    required:
      SIU: [SCH, SCH-1|SCH-2, PID, PID-3]
      SIU^S12: [SCH-11.4|TQ1-7]
    timestamps: [MSH-7, SCH-11.4, TQ1-7]
""",
    after=("parse",),
))
