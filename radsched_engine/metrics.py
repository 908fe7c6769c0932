"""Every Prometheus metric of the engine, in one place, with bounded label values only."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series (one timestamp per label set) add nothing an operator reads.
disable_created_metrics()

# Label values are bounded: channel names come from config files, message types from the set
# below (anything else is "other"), stages from the registry, ACK codes from table 0008.
KNOWN_TYPES = frozenset({
    "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S16", "SIU^S17", "SIU^S26",
    "ORM^O01", "OMI^O23", "ADT^A01", "ADT^A04", "ADT^A08", "ORU^R01", "ACK",
})
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STAGE_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


def type_label(message_type: str) -> str:
    """A bounded label for ``TYPE^TRIGGER``: known types as they are, anything else ``other``."""
    return message_type if message_type in KNOWN_TYPES else ("none" if not message_type else "other")


MESSAGES = Counter(
    "radsched_messages", "Messages answered, by channel, message type and ACK code (MSA-1).",
    ["channel", "type", "ack"])
ACK_SECONDS = Histogram(
    "radsched_ack_latency_seconds", "Time from a frame's last byte to its ACK being written.",
    ["channel"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram(
    "radsched_stage_duration_seconds", "Time spent in each pipeline stage.",
    ["channel", "stage"], buckets=STAGE_BUCKETS)
STAGE_OUTCOMES = Counter(
    "radsched_stage_outcomes", "Messages whose outcome was decided by a stage, by outcome.",
    ["channel", "stage", "outcome"])
FRAME_ERRORS = Counter(
    "radsched_frame_errors", "Framing problems: junk bytes, oversize or timed-out frames, ...",
    ["channel", "reason"])
JUNK_BYTES = Counter(
    "radsched_junk_bytes", "Bytes received outside MLLP frames and skipped.", ["channel"])
BYTES_IN = Counter("radsched_received_bytes", "Bytes received on MLLP connections.", ["channel"])
CONNECTIONS_OPEN = Gauge(
    "radsched_connections_open", "MLLP connections currently open.", ["channel"])
CONNECTIONS = Counter(
    "radsched_connections", "MLLP connections by result (accepted, refused_limit, "
    "refused_allowlist, tls_failed).", ["channel", "result"])
COMMIT_FAILURES = Counter(
    "radsched_commit_failures", "Messages answered AR because their journal/effects did not "
    "commit.", ["channel"])

# Store (persist issue) -----------------------------------------------------------------------
STORE_SECONDS = Histogram(
    "radsched_store_duration_seconds", "Database transaction time per message, by operation.",
    ["operation"], buckets=LATENCY_BUCKETS)
STORE_FAILURES = Counter(
    "radsched_store_failures", "Failed database transactions, by reason.", ["reason"])
POOL_IN_USE = Gauge("radsched_db_pool_in_use", "Database connections currently checked out.")
POOL_SIZE = Gauge("radsched_db_pool_size", "Database connections in the pool.")
JOURNAL_ROWS = Counter(
    "radsched_journal_rows", "Journal rows committed, by outcome.", ["outcome"])

# Conflict check ------------------------------------------------------------------------------
CONFLICTS = Counter(
    "radsched_conflicts", "Conflict findings, by rule id, severity and source (rules, ai).",
    ["rule", "severity", "source"])
AI_ANALYSES = Counter(
    "radsched_ai_analyses", "Claude analyses by result (ok, failed, timeout, invalid, disabled).",
    ["result"])

# Outbox / notify -----------------------------------------------------------------------------
OUTBOX_DEPTH = Gauge(
    "radsched_outbox_depth", "Outbox rows waiting (pending or retrying), by kind.", ["kind"])
OUTBOX_OLDEST_SECONDS = Gauge(
    "radsched_outbox_oldest_pending_seconds", "Age of the oldest pending outbox row, by kind.",
    ["kind"])
OUTBOX_RESULTS = Counter(
    "radsched_outbox_results", "Outbox deliveries by kind and result (sent, retry, dead, "
    "skipped_dry_run, skipped_no_phone, opted_out).", ["kind", "result"])
OUTBOX_SEND_SECONDS = Histogram(
    "radsched_outbox_send_duration_seconds", "Time taken by one outbox delivery attempt.",
    ["kind"], buckets=LATENCY_BUCKETS)

# Retention (data pruner) ---------------------------------------------------------------------
RETENTION_ROWS = Counter(
    "radsched_retention_rows", "Rows pruned by the retention task, by table (hl7_messages, "
    "outbox) and action (raw_cleared, deleted).", ["table", "action"])
RETENTION_LAST_SUCCESS = Gauge(
    "radsched_retention_last_success_timestamp_seconds",
    "Unix time of the retention task's last complete run.")

RELOADS = Counter("radsched_config_reloads", "SIGHUP reloads of the channel files, by result.",
                  ["result"])
ENGINE_READY = Gauge("radsched_ready", "1 when every channel listens and the store is up.")


def registry():  # pragma: no cover - trivial accessor used by the HTTP endpoint
    return REGISTRY
