"""HL7 paths (``PID-3[2].4.1``, ``OBR[2]-4``): parsed once, cached, used by views and options."""

from __future__ import annotations

import re
from typing import NamedTuple


class Path(NamedTuple):
    """A parsed HL7 path such as ``PID-3[2].4.1`` or ``OBR[2]-4.1`` (all numbers 1-based)."""

    segment: str
    occurrence: int
    field: int
    repetition: int
    component: int
    subcomponent: int
    depth: int            # 1 field, 2 component, 3 subcomponent (as written)
    explicit_rep: bool    # a ``[n]`` repetition was written


_PATH = re.compile(r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?-(\d+)(?:\[(\d+)\])?(?:\.(\d+))?(?:\.(\d+))?")
_PATHS: dict[str, Path] = {}


def parse_path(path: str) -> Path:
    """Parse (and cache) an HL7 path; raises ``ValueError`` for a malformed one."""
    found = _PATHS.get(path)
    if found is not None:
        return found
    m = _PATH.fullmatch(path.strip())
    if m is None or int(m.group(3)) < 1:
        raise ValueError(f"not an HL7 path: {path!r} (expected e.g. PID-3, PID-5.1, PID-3[2].4.1)")
    seg, occ, fld, rep, comp, sub = m.groups()
    numbers = [int(x) if x else 1 for x in (occ, rep, comp, sub)]
    if min(numbers) < 1:
        raise ValueError(f"not an HL7 path: {path!r} (positions start at 1)")
    depth = 3 if sub else 2 if comp else 1
    parsed = Path(seg, numbers[0], int(fld), numbers[1], numbers[2], numbers[3], depth, rep is not None)
    if len(_PATHS) < 4096:
        _PATHS[path] = parsed
    return parsed
