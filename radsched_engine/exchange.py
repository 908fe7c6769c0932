"""One message in flight: raw bytes, peer, parsed view, per-stage facts and the final outcome."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import Problem

if TYPE_CHECKING:
    from .hl7.message import Message


class Outcome(enum.Enum):
    """Where a message ended up (Mirth's status lifecycle, trimmed to what an MLLP receiver needs)."""

    ACCEPTED = "accepted"      # processed and (where the channel persists) committed
    FILTERED = "filtered"      # a stage dropped it on purpose; answered AA
    DUPLICATE = "duplicate"    # redelivery of a message already applied; answered AA, not re-applied
    REJECTED = "rejected"      # content or routing error; AE (AR for 200-203)
    RETRY = "retry"            # receiver-side trouble; AR, sender resends unchanged
    ERROR = "error"            # unexpected exception; AR 207

    @property
    def accepted(self) -> bool:
        return self in (Outcome.ACCEPTED, Outcome.FILTERED, Outcome.DUPLICATE)


@dataclass(slots=True, eq=False)
class Exchange:
    """State of one received frame as it moves through a channel's pipeline."""

    raw: bytes
    channel: str
    peer: str
    received_at: datetime
    message: Message | None = None
    outcome: Outcome | None = None
    problem: Problem | None = None          # the error that decided a NAK
    user_text: str | None = None            # plain-language text for ERR-8 / MSA-3
    warnings: list[Problem] = field(default_factory=list)   # ERR segments with severity W/I
    data: dict[str, Any] = field(default_factory=dict)      # facts stages hand to later stages
    tx: Any = None                          # the open transaction (a connection) inside a unit of work
    ack_code: str | None = None             # MSA-1 actually sent, filled in by the channel
    journal_id: int | None = None           # journal row id once committed
    replay_ack_code: str | None = None      # for a duplicate: the ACK code first sent
    ack_mode: str = "auto"                  # the channel's ack.mode (auto / original)

    @property
    def control_id(self) -> str:
        return self.message.control_id if self.message is not None else ""

    @property
    def message_type(self) -> str:
        """``TYPE^TRIGGER`` (e.g. ``SIU^S12``) or ``""`` when unknown."""
        return self.message.type_trigger if self.message is not None else ""
