"""Micro benchmark: µs per message for parse, parse+validate, parse+validate+extract and the whole
ACK path of an ack-only channel (Channel.handle: parse, validate, ACK, log line, metrics) for SIU and ORM.

Run: ``/work/venv/bin/python bench/micro_parse.py [--number N]``. Not a test: it prints numbers only.
The stages are driven without an event loop (their coroutines never suspend), so the figures are
the CPU cost of the stage code itself; python-hl7's full ``hl7.parse`` is timed for scale.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from radsched_engine import logs
from radsched_engine.ack import AckIdentity
from radsched_engine.channel import Channel
from radsched_engine.domain.extract import event_for
from radsched_engine.exchange import Exchange
from radsched_engine.hl7.message import Message
from radsched_engine.pipeline import Pipeline, Resources
from radsched_engine.stages import parse as parse_module
from radsched_engine.stages import validate as validate_module
from radsched_engine.stages.parse import ParseOptions, ParseStage
from radsched_engine.stages.validate import ValidateOptions, ValidateStage

# Typical messages (fictitious data written for this benchmark): a 13-segment v2.5.1 SIU^S12 and
# an 8-segment v2.3.1 ORM^O01.
SIU = "\r".join([
    "MSH|^~\\&|RIS|GENHOSP|RADSCHED|RADIOLOGY|20261201083000-0500||SIU^S12^SIU_S12|RS-0001|P|2.5.1",
    "SCH|PL1001^RIS|FL1001^RADSCHED||||Routine^Routine|ROUTINE^Routine|NORMAL|30|min|"
    "^^30^20261215090000-0500^^R|||||||||||Booked",
    "TQ1|1||||||20261215090000-0500|20261215093000-0500|R",
    "NTE|1||Patient prefers morning slots",
    "PID|1||MRN100200300^^^GENHOSP^MR~123-45-6789^^^SSA^SS||TESTPATIENT^JANE^Q||19800415|F|||"
    "12 Example St^^Springfield^MA^01101||^PRN^PH^^1^413^5550100~^PRN^CP^^1^413^5550199",
    "PD1|||GENHOSP^^1234",
    "PV1|1|O|RAD^CT1^^GENHOSP||||1234^WELBY^MARCUS^^^DR",
    "RGS|1|A",
    "AIS|1|A|74177^CT ABDOMEN AND PELVIS WITH CONTRAST^CPT|20261215090000-0500|||30|min",
    "AIG|1|A|CT1^Scanner 1|CT^CT scanner||||20261215090000-0500|||30|min",
    "AIL|1|A|CT1^^^GENHOSP^^^MAIN^1^CT Scanner 1|CT|||20261215090000-0500|||30|min",
    "AIP|1|A|5678^RAD^TECH^^^^^^^^^^TECH|TECH|||20261215090000-0500|||30|min",
    "NTE|1||Contrast allergy screening done",
]).encode() + b"\r"
ORM = "\r".join([
    "MSH|^~\\&|RIS|GENHOSP|RADSCHED|RADIOLOGY|20261201083000-0500||ORM^O01^ORM_O01|RS-0009|P|2.3.1",
    "PID|1||MRN100200300^^^GENHOSP^MR||TESTPATIENT^JANE^Q||19800415|F|||"
    "12 Example St^^Springfield^MA^01101||^PRN^PH^^1^413^5550100~^PRN^CP^^1^413^5550199",
    "PV1|1|O|RAD^CT1^^GENHOSP||||1234^WELBY^MARCUS^^^DR",
    "ORC|NW|ORD5001^EPIC|ACC5001^RIS||SC||^^^20261215090000-0500^^R||20261201082500-0500|||"
    "1234^WELBY^MARCUS^^^DR",
    "OBR|1|ORD5001^EPIC|ACC5001^RIS|74177^CT ABDOMEN AND PELVIS WITH CONTRAST^CPT|||"
    "20261215090000-0500||||||Abdominal pain|||1234^WELBY^MARCUS^^^DR||ACC5001|RP5001||||CT||||"
    "^^^20261215090000-0500^^R",
    "NTE|1||Prior CT 2025-03",
    "DG1|1||R10.9^Abdominal pain^I10",
    "ZDS|1.2.840.113619.2.55.3.1234^RIS^Application^DICOM",
]).encode() + b"\r"


def _drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (the parse/validate stages) without an event loop."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("stage suspended")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--number", type=int, default=20000, help="messages per measurement")
    ap.add_argument("--repeat", type=int, default=5, help="measurements; the best is shown")
    args = ap.parse_args()

    settings = SimpleNamespace(accept=("SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "ORM^O01"))
    resources = Resources("bench", settings)
    parse = ParseStage(ParseOptions(), resources)
    validate = ValidateStage(ValidateOptions(), resources)
    tz = ZoneInfo("America/New_York")
    now = datetime.now(UTC)

    def exchange(raw: bytes) -> Exchange:
        return Exchange(raw, "bench", "127.0.0.1:1", now)

    def parse_only(raw: bytes) -> None:
        Message.parse(raw)

    def parse_stage(raw: bytes) -> None:
        _drive(parse(exchange(raw)))

    def parse_validate(raw: bytes) -> None:
        ex = exchange(raw)
        _drive(parse(ex))
        _drive(validate(ex))

    def parse_validate_extract(raw: bytes) -> None:
        ex = exchange(raw)
        _drive(parse(ex))
        _drive(validate(ex))
        event_for(ex, tz)

    # The ack-only channel as the engine runs it: JSON log line per message (to /dev/null
    # here), metrics on; the handler coroutine never suspends without a database.
    logs.configure("json", "info", open(os.devnull, "w"))  # noqa: SIM115
    channel = Channel("bench", Pipeline("bench", [(parse_module.SPEC, parse),
                                                  (validate_module.SPEC, validate)]),
                      AckIdentity())

    def ack_path(raw: bytes) -> None:
        coro = channel.handle(raw, "127.0.0.1:1")
        try:
            coro.send(None)
        except StopIteration:
            return
        raise RuntimeError("handle suspended")

    cases: list[tuple[str, Callable[[bytes], None]]] = [
        ("Message.parse", parse_only),
        ("parse stage", parse_stage),
        ("parse+validate", parse_validate),
        ("parse+validate+extract", parse_validate_extract),
        ("Channel.handle (ACK)", ack_path),
    ]
    try:
        import hl7  # python-hl7, for scale only
    except ImportError:  # pragma: no cover
        hl7 = None

    for name, raw in (("SIU^S12 (13 segments)", SIU), ("ORM^O01 (8 segments)", ORM)):
        print(f"{name}, {len(raw)} bytes")
        results: dict[str, float] = {}
        for label, fn in cases:
            fn(raw)   # warm caches
            best = min(timeit.repeat(lambda fn=fn, raw=raw: fn(raw), number=args.number,
                                     repeat=args.repeat))
            results[label] = best / args.number * 1e6
            print(f"  {label:<24} {results[label]:8.2f} µs/message")
        if hl7 is not None:
            text = raw.decode("ascii")
            n = max(args.number // 50, 100)
            best = min(timeit.repeat(lambda text=text: hl7.parse(text), number=n, repeat=args.repeat))
            ref = best / n * 1e6
            print(f"  {'python-hl7 hl7.parse':<24} {ref:8.2f} µs/message (reference)")
            # The budget (15 µs where hl7.parse costs ~220 µs) as a machine-independent ratio.
            share = results["parse+validate"] / ref
            print(f"  parse+validate = {share:.1%} of hl7.parse (budget ~{15 / 220:.1%}); "
                  f"~{share * 220:.1f} µs on a machine where hl7.parse takes 220 µs")


if __name__ == "__main__":
    main()
