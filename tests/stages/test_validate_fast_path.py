"""The validate fast path never accepts a message that the precise checks would refuse."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from radsched_engine.errors import Reject
from radsched_engine.hl7.message import Message
from radsched_engine.stages.validate import ValidateOptions, ValidateStage
from tests.e2e.harness import SAMPLES

BASES = [p.read_bytes() for p in sorted(SAMPLES.glob("*.hl7"))]
ACCEPT = ("SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17", "SIU^S26", "ORM^O01")
STAGE = ValidateStage(ValidateOptions(), SimpleNamespace(settings=SimpleNamespace(accept=ACCEPT)))
NOISE = st.sampled_from(["", '""', "^", "~", "&", " ", "2026", "20261301", "20261231", "abc",
                         "20261215090000-0500", "^^^x", "20261215^x", "x~20261215", "1&2"])


def precise_accepts(message: Message) -> bool:
    try:
        for rule in STAGE._rules(message.message_code, message.type_trigger):
            STAGE._check_rule(message, rule)
        STAGE._check_timestamps(message)
    except Reject:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(BASES), st.data())
def test_fast_path_is_never_more_lenient(base, data):
    lines = base.decode().split("\r")
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(1, max(1, len(lines) - 1)))
        if i >= len(lines) or not lines[i]:
            continue
        fields = lines[i].split("|")
        j = data.draw(st.integers(1, max(1, len(fields) - 1))) if len(fields) > 1 else 0
        if j:
            fields[j] = data.draw(NOISE)
        if data.draw(st.booleans()) and len(fields) > 2:
            del fields[-1]
        lines[i] = "|".join(fields)
    if data.draw(st.booleans()) and len(lines) > 2:
        del lines[data.draw(st.integers(1, len(lines) - 2))]
    message = Message.parse("\r".join(lines).encode())
    if message.type_trigger not in ACCEPT:
        return
    plan = STAGE._plan(message)
    if plan is not None and plan.passes(message):
        assert precise_accepts(message)
