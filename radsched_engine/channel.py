"""A channel's frame handler: split the frame, run the pipeline per message, answer with the ACK."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from . import metrics
from .ack import AckBuilder, AckIdentity, reply_code, to_wire, wants_reply
from .errors import Problem
from .exchange import Exchange, Outcome
from .hl7.msh import MshHeader, find_msh, sniff_msh
from .logs import MessageLog
from .pipeline import Pipeline

log = structlog.get_logger("radsched.channel")
message_log = MessageLog("radsched.channel")

_BATCH_HEADERS = (b"FHS", b"BHS")
_BATCH_TRAILERS = (b"FHS", b"BHS", b"BTS", b"FTS")


@dataclass(frozen=True, slots=True)
class FramePlan:
    """What a frame holds: ``single`` message, an FHS/BHS ``batch``, or ``multi`` bare MSHs."""

    kind: str
    messages: tuple[bytes, ...]


def plan_frame(raw: bytes) -> FramePlan:
    """Classify a frame and split batches/multi-message frames into their messages."""
    head = raw.lstrip(b"\r\n\t \xef\xbb\xbf")
    is_batch = head[:3] in _BATCH_HEADERS
    if not is_batch and b"\rMSH" not in raw and b"\nMSH" not in raw:
        return FramePlan("single", (raw,))
    starts = []
    pos = find_msh(raw)
    while pos != -1:
        starts.append(pos)
        nxt = raw.find(b"MSH", pos + 3)
        while nxt != -1 and raw[nxt - 1] not in b"\r\n":
            nxt = raw.find(b"MSH", nxt + 3)
        pos = nxt
    if not starts:
        return FramePlan("batch" if is_batch else "single", (raw,) if not is_batch else ())
    messages = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(raw)
        lines = raw[start:end].replace(b"\r\n", b"\r").split(b"\r")
        if len(lines) == 1:
            lines = raw[start:end].split(b"\n")
        kept = [ln for ln in lines if ln.strip() and ln.lstrip()[:3] not in _BATCH_TRAILERS]
        messages.append(b"\r".join(kept) + b"\r")
    kind = "batch" if is_batch else ("multi" if len(messages) > 1 else "single")
    return FramePlan(kind, tuple(messages))


class Channel:
    """Turns one MLLP frame into one reply, through the channel's pipeline.

    The listener calls ``handle`` and writes what it returns; it knows nothing else. Batches
    (FHS/BHS) are processed message by message and answered with one ACK batch (BHS, one ACK
    per message, BTS). A frame holding several MSH without batch headers is a sender bug: it
    gets one AE 100 unless the channel is configured with ``ack.multi_message: process``.
    """

    def __init__(self, name: str, pipeline: Pipeline, identity: AckIdentity | None = None,
                 ack_mode: str = "auto", multi_message: str = "reject") -> None:
        self.name = name
        self.pipeline = pipeline
        self.acks = AckBuilder(identity)
        self.ack_mode = ack_mode
        self.multi_message = multi_message
        # Without a database the pipeline never waits on I/O: the listener may run it inline.
        self.inline = pipeline.unit_of_work is None
        self._counters: dict[tuple[str, str], object] = {}
        self._latency = metrics.ACK_SECONDS.labels(name)

    async def handle(self, frame: bytes, peer: str) -> bytes | None:
        """The reply payload for a frame (unframed), or None when no reply is due."""
        started = time.perf_counter()
        if frame[:3] == b"MSH" and b"\rMSH" not in frame and b"\nMSH" not in frame:
            # The common case, one message: ``_one`` and ``_process`` written out in place.
            ex = Exchange(raw=frame, channel=self.name, peer=peer, received_at=datetime.now(UTC),
                          ack_mode=self.ack_mode)
            await self.pipeline.run(ex)
            segments, _ = self._reply_segments(ex, started)
            self._count(ex)
            reply = to_wire(segments) if segments is not None else None
            self._latency.observe(time.perf_counter() - started)
            return reply
        plan = plan_frame(frame)
        if plan.kind == "single":
            reply = await self._one(frame, peer, started)
        elif plan.kind == "batch":
            reply = await self._batch(frame, plan, peer, started)
        elif self.multi_message == "process":
            reply = await self._multi(plan, peer, started)
        else:
            reply = await self._one(frame, peer, started, preset=Problem(
                100, f"frame holds {len(plan.messages)} messages without batch headers; "
                     "send one message per frame or use an FHS/BHS batch"))
        self._latency.observe(time.perf_counter() - started)
        return reply

    def oversize(self, head: bytes, size: int, peer: str) -> bytes | None:
        """The NAK for a frame larger than the channel's limit (the connection is then closed).

        Only the head of the frame was kept (memory stays bounded), so it is not journaled; the
        log line and the ``oversize`` frame-error counter record it.
        """
        header = sniff_msh(head)
        problem = Problem(100, f"frame of more than {size} bytes exceeds this channel's "
                               "max_frame_bytes; the message was not accepted")
        send, enhanced = wants_reply(header, False, self.ack_mode)
        code = ("CE" if enhanced else "AE") if header is not None else "AR"
        metrics.MESSAGES.labels(self.name, "other" if header else "none", code).inc()
        log.warning("message", channel=self.name, control_id=header.control_id if header else "",
                    ack=code, outcome="rejected", peer=peer, code=100, error=problem.text)
        if not send:
            return None
        return self.acks.build(header, code, problem)

    async def _process(self, raw: bytes, peer: str, preset: Problem | None = None) -> Exchange:
        ex = Exchange(raw=raw, channel=self.name, peer=peer, received_at=datetime.now(UTC),
                      ack_mode=self.ack_mode)
        if preset is not None:
            ex.outcome = Outcome.REJECTED
            ex.problem = preset
        await self.pipeline.run(ex)
        return ex

    def _reply_segments(self, ex: Exchange, started: float) -> tuple[list[str] | None, MshHeader | None]:
        header = ex.message.header if ex.message is not None else sniff_msh(ex.raw)
        outcome = ex.outcome or Outcome.ERROR
        problem_code = ex.problem.code if ex.problem else None
        code = ex.ack_code = reply_code(header, outcome, problem_code, ex.replay_ack_code,
                                        self.ack_mode)
        self._log(ex, header, started)
        if code is None:
            return None, header
        return self.acks.segments(header, code, ex.problem, ex.warnings, ex.user_text), header

    async def _one(self, raw: bytes, peer: str, started: float,
                   preset: Problem | None = None) -> bytes | None:
        ex = await self._process(raw, peer, preset)
        segments, _ = self._reply_segments(ex, started)
        self._count(ex)
        if segments is None:
            return None
        return to_wire(segments)

    async def _multi(self, plan: FramePlan, peer: str, started: float) -> bytes | None:
        """Process each message in order; stop at the first not accepted and answer for it."""
        last: list[str] | None = None
        for raw in plan.messages:
            ex = await self._process(raw, peer)
            last, _ = self._reply_segments(ex, started)
            self._count(ex)
            if not (ex.outcome and ex.outcome.accepted):
                break
        return to_wire(last) if last else None

    async def _batch(self, frame: bytes, plan: FramePlan, peer: str, started: float) -> bytes:
        lines: list[str] = []
        first: MshHeader | None = None
        for raw in plan.messages:
            ex = await self._process(raw, peer)
            segments, header = self._reply_segments(ex, started)
            self._count(ex)
            first = first or header
            if segments:
                lines.extend(segments)
        d = first.delimiters if first else None
        f = d.field if d else "|"
        enc = d.encoding_characters if d else "^~\\&"
        ident = self.acks.identity
        their = (first.sending_application, first.sending_facility) if first else ("", "")
        bhs = f"BHS{f}{enc}{f}{ident.sending_application}{f}{ident.sending_facility}{f}{their[0]}" \
              f"{f}{their[1]}{f}{datetime.now(UTC).strftime('%Y%m%d%H%M%S+0000')}"
        count = sum(1 for ln in lines if ln.startswith("MSH"))
        return to_wire([bhs, *lines, f"BTS{f}{count}"])

    def _count(self, ex: Exchange) -> None:
        key = (metrics.type_label(ex.message_type), ex.ack_code or "none")
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metrics.MESSAGES.labels(self.name, *key)
        child.inc()   # type: ignore[attr-defined]

    def _log(self, ex: Exchange, header: MshHeader | None, started: float) -> None:
        outcome = ex.outcome.value if ex.outcome else "error"
        ms = round((time.perf_counter() - started) * 1000, 3)
        # The message's own header when it was parsed (its MSH-10 is the exchange's control id).
        control_id = header.control_id if header is not None else ""
        message = ex.message
        mtype = message.type_trigger if message is not None else ""
        if not mtype and header is not None:
            mtype = f"{header.message_code}^{header.trigger}"
        if ex.problem is None:
            message_log.answered(self.name, control_id, mtype, ex.ack_code or "none", outcome, ms,
                                 ex.peer)
        else:
            p = ex.problem
            message_log.warning("message", channel=self.name, control_id=control_id, type=mtype,
                        ack=ex.ack_code or "none", outcome=outcome, ms=ms, peer=ex.peer, code=p.code,
                        location=str(p.location) if p.location else None, error=p.text)
