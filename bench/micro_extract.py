"""Micro benchmark: µs per message of extraction (HL7 → domain event) and persist mapping (event → columns).

Run: ``/work/venv/bin/python bench/micro_extract.py [--number N] [--repeat R] [--profile]``. Not a
test: it prints numbers only. Messages: ``bench/messages/siu_s12.hl7`` (the durable bench's new
booking, placeholders filled like ``bench/loadgen.py``), every file in ``sample_messages/`` and, when
present, the SIU/ORM/OMI files of ``../shared/hl7-samples``.

Each figure is the minimum over ``--repeat`` batches of CPU time (``time.process_time_ns``) per
message: robust while other processes use the machine. The cyclic garbage collector is off while
a batch runs (as in ``timeit``): a batch keeps its parsed messages alive, and full collections
over them would be charged to whatever code allocated at that moment. Extraction runs on freshly
parsed messages (the lazy view caches split fields, so a parsed message is used once); parsing is
not counted.
``mapping`` is ``appointment_patch`` + ``resource_rows``; ``json`` is the store's jsonb encoder
(``store.db._jsonb_encode``, what the asyncpg codec runs for the persist call's jsonb arguments)
applied to both.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from radsched_engine.domain.extract import appointment_from, order_event_from
from radsched_engine.domain.model import AppointmentEvent
from radsched_engine.errors import Reject
from radsched_engine.hl7.message import Message
from radsched_engine.store.db import _jsonb_encode
from radsched_engine.store.mapping import appointment_patch, resource_rows

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "hl7-samples"
TZ = ZoneInfo("America/New_York")
DEFAULT = timedelta(minutes=30)


def bench_message() -> bytes:
    text = (ROOT / "bench" / "messages" / "siu_s12.hl7").read_text()
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    for key, value in (("{cid}", "BENCH-1-1"), ("{n}", "1041"), ("{start}", "20270104090000+0000"),
                       ("{room}", "ROOM01")):
        text = text.replace(key, value)
    return text.encode()


def split(raw: bytes) -> list[bytes]:
    """The messages of a file: a new one at every line starting with MSH (batch headers dropped)."""
    lines = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    out: list[list[bytes]] = []
    for line in lines:
        if line.lstrip(b"\x0b\x1c").startswith(b"MSH"):
            out.append([line.lstrip(b"\x0b\x1c")])
        elif out and not line.startswith((b"BTS", b"FTS")):
            out[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in out]


def cases() -> list[tuple[str, bytes]]:
    found = [("bench/messages/siu_s12.hl7", bench_message())]
    for path in sorted((ROOT / "sample_messages").glob("*.hl7")):
        found.append((f"sample_messages/{path.name}", path.read_bytes()))
    if SHARED.is_dir():
        for path in sorted(SHARED.glob("*.hl7")):
            if path.name.startswith(("siu_", "orm_", "omi_", "multi_message_siu", "batch_fhs_bhs_orm")):
                for i, raw in enumerate(split(path.read_bytes()), 1):
                    found.append((f"shared/{path.name}" + (f"#{i}" if i > 1 else ""), raw))
    return found


def extractor(message: Message) -> Callable[[Message], object] | None:
    if message.message_code == "SIU":
        return lambda m: appointment_from(m, TZ)
    if message.type_trigger in ("ORM^O01", "OMI^O23"):
        return lambda m: order_event_from(m, TZ)
    return None


def best_ns(fn: Callable[[], object], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        t0 = time.process_time_ns()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time_ns() - t0) / number)
        gc.enable()
    return best


def extract_ns(raw: bytes, extract: Callable[[Message], object], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        messages = [Message.parse(raw) for _ in range(number)]
        gc.collect()
        gc.disable()
        t0 = time.process_time_ns()
        for m in messages:
            extract(m)
        best = min(best, (time.process_time_ns() - t0) / number)
        gc.enable()
    return best


def profile(raw: bytes, number: int) -> None:
    message = Message.parse(raw)
    extract = extractor(message)
    assert extract is not None
    messages = [Message.parse(raw) for _ in range(number)]
    event = extract(Message.parse(raw))
    gc.collect()
    gc.disable()
    prof = cProfile.Profile()
    prof.enable()
    for m in messages:
        extract(m)
    if isinstance(event, AppointmentEvent):
        for _ in range(number):
            appointment_patch(event, default_duration=DEFAULT)
            resource_rows(event.resources)
    prof.disable()
    gc.enable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--number", type=int, default=500, help="messages per measurement")
    ap.add_argument("--repeat", type=int, default=5, help="measurements; the best is shown")
    ap.add_argument("--only", default="", help="only cases whose name contains this text")
    ap.add_argument("--profile", action="store_true", help="cProfile the bench message instead")
    args = ap.parse_args()
    if args.profile:
        profile(bench_message(), args.number)
        return

    print(f"{'message':<58} {'extract':>8} {'mapping':>8} {'json':>8} {'total':>8}  µs/message")
    totals = [0.0, 0.0, 0.0]
    counted = 0
    for name, raw in cases():
        if args.only not in name:
            continue
        try:
            message = Message.parse(raw)
            extract = extractor(message)
            if extract is None:
                continue
            event = extract(message)
        except Reject as exc:
            print(f"{name:<58} refused (AE/AR {exc.code})")
            continue
        ext = extract_ns(raw, extract, args.number, args.repeat) / 1000
        mapping = dumps = 0.0
        if isinstance(event, AppointmentEvent):
            ev = event
            mapping = best_ns(lambda ev=ev: (appointment_patch(ev, default_duration=DEFAULT),
                                             resource_rows(ev.resources)),
                              args.number, args.repeat) / 1000
            patch, rows = appointment_patch(ev, default_duration=DEFAULT), resource_rows(ev.resources)
            dumps = best_ns(lambda p=patch, r=rows: (_jsonb_encode(p), _jsonb_encode(r)), args.number,
                            args.repeat) / 1000
        totals[0] += ext
        totals[1] += mapping
        totals[2] += dumps
        counted += 1
        print(f"{name:<58} {ext:8.1f} {mapping:8.1f} {dumps:8.1f} {ext + mapping + dumps:8.1f}")
    if counted:
        e, m, j = (t / counted for t in totals)
        print(f"{f'mean of {counted} messages':<58} {e:8.1f} {m:8.1f} {j:8.1f} {e + m + j:8.1f}")


if __name__ == "__main__":
    main()
