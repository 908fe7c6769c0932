"""Every Prometheus metric of the engine, in one place, with bounded label values only."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

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


class _Family(Collector):
    """A labelled metric counted in plain Python numbers and exported when scraped.

    The per-message metrics live here: prometheus_client takes a lock on every ``inc`` and
    ``observe`` (two for a histogram) and looks children up under another; these are only ever
    updated from the event loop's thread, so a list slot or an attribute is enough. ``/metrics``
    shows them exactly as prometheus_client's own Counter/Histogram would (same names, HELP,
    TYPE, labels and values). ``labels(...)`` returns a child with ``inc`` / ``observe``.
    """

    def __init__(self, name: str, documentation: str, labelnames: list[str]) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        REGISTRY.register(self)

    def labels(self, *values: Any, **by_name: Any) -> Any:
        if by_name:
            if values:
                raise ValueError("can't pass both *args and **kwargs")
            if set(by_name) != set(self._labelnames):
                raise ValueError("incorrect label names")
            values = tuple(by_name[n] for n in self._labelnames)
        if len(values) != len(self._labelnames):
            raise ValueError("incorrect label count")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._child()
        return child

    def _child(self) -> Any:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> Any:
        raise NotImplementedError


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class FastCounter(_Family):
    """``prometheus_client.Counter`` for the per-message path (see ``_Family``)."""

    def _child(self) -> _CounterChild:
        return _CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._doc, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in list(self._children.items()):
            family.add_metric(key, child.value)
        yield family


class _HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        self.counts[bisect_left(self._bounds, amount)] += 1


class FastHistogram(_Family):
    """``prometheus_client.Histogram`` for the per-message path (see ``_Family``)."""

    def __init__(self, name: str, documentation: str, labelnames: list[str],
                 buckets: tuple[float, ...]) -> None:
        bounds = tuple(float(b) for b in buckets)
        self._bounds = bounds if bounds[-1] == INF else (*bounds, INF)
        self._les = tuple(floatToGoString(b) for b in self._bounds)
        super().__init__(name, documentation, labelnames)

    def _child(self) -> _HistogramChild:
        return _HistogramChild(self._bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in list(self._children.items()):
            total, buckets = 0, []
            for le, count in zip(self._les, list(child.counts), strict=True):
                total += count
                buckets.append((le, float(total)))
            family.add_metric(key, buckets, child.sum)
        yield family


def type_label(message_type: str) -> str:
    """A bounded label for ``TYPE^TRIGGER``: known types as they are, anything else ``other``."""
    return message_type if message_type in KNOWN_TYPES else ("none" if not message_type else "other")


MESSAGES = FastCounter(
    "radsched_messages", "Messages answered, by channel, message type and ACK code (MSA-1).",
    ["channel", "type", "ack"])
ACK_SECONDS = FastHistogram(
    "radsched_ack_latency_seconds", "Time from a frame's last byte to its ACK being written.",
    ["channel"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = FastHistogram(
    "radsched_stage_duration_seconds", "Time spent in each pipeline stage.",
    ["channel", "stage"], buckets=STAGE_BUCKETS)
STAGE_OUTCOMES = FastCounter(
    "radsched_stage_outcomes", "Messages whose outcome was decided by a stage, by outcome.",
    ["channel", "stage", "outcome"])
FRAME_ERRORS = Counter(
    "radsched_frame_errors", "Framing problems: junk bytes, oversize or timed-out frames, ...",
    ["channel", "reason"])
JUNK_BYTES = Counter(
    "radsched_junk_bytes", "Bytes received outside MLLP frames and skipped.", ["channel"])
BYTES_IN = FastCounter("radsched_received_bytes", "Bytes received on MLLP connections.", ["channel"])
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
BATCH_WRITES = Counter(
    "radsched_store_batch_writes", "Persist calls of group-commit batches, by how they were "
    "written: 'set' (several bookings in one statement) or 'one_by_one'.", ["path"])
POOL_IN_USE = Gauge("radsched_db_pool_in_use", "Database connections currently checked out.")
POOL_SIZE = Gauge("radsched_db_pool_size", "Database connections in the pool.")
JOURNAL_ROWS = Counter(
    "radsched_journal_rows", "Journal rows committed, by outcome.", ["outcome"])

# Conflict check ------------------------------------------------------------------------------
CONFLICTS = FastCounter(
    "radsched_conflicts", "Conflict findings, by rule id, severity and source (rules, ai).",
    ["rule", "severity", "source"])
AI_ANALYSES = Counter(
    "radsched_ai_analyses", "Claude analyses by result (ok, failed, timeout, invalid, disabled).",
    ["result"])

# Outbox / notify -----------------------------------------------------------------------------
OUTBOX_DEPTH = Gauge(
    "radsched_outbox_depth",
    "Outbox rows waiting (in the intake, pending, retrying or in flight), by kind; beyond "
    "10,000 in the intake, its share is estimated from the rows' ids.", ["kind"])
OUTBOX_OLDEST_SECONDS = Gauge(
    "radsched_outbox_oldest_pending_seconds", "Age of the oldest pending outbox row, by kind.",
    ["kind"])
OUTBOX_RESULTS = Counter(
    "radsched_outbox_results", "Outbox deliveries by kind and result (sent, retry, dead, "
    "skipped_dry_run, skipped_no_phone, opted_out).", ["kind", "result"])
OUTBOX_PROCESS_EXITS = Counter(
    "radsched_outbox_process_exits", "Unexpected ends of the outbox worker process (it is "
    "started again).")
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


# Metrics of the outbox worker process (``outbox_process``): it sends a snapshot of its own
# registry now and then; ``/metrics`` shows this process's series plus those, summed per series.
# Only one process ever sets a given gauge, so a sum is right for every metric here.
Snapshot = list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]
_SKIP = ("process_", "python_")         # about a process, not the engine: this one's stand
_remote: dict[str, Snapshot] = {}
_retired: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}


def snapshot() -> Snapshot:
    """This process's series: (family, type, help, [(sample, labels, value)]) per family."""
    return [(m.name, m.type, m.documentation,
             [(s.name, dict(s.labels), float(s.value)) for s in m.samples])
            for m in REGISTRY.collect() if not m.name.startswith(_SKIP)]


def set_remote(source: str, snap: Snapshot) -> None:
    """The latest snapshot from ``source`` (replaces the previous one)."""
    _remote[source] = snap


def retire_remote(source: str) -> None:
    """``source`` ended: keep its counters' and histograms' totals (they must never go back when
    a new process takes over), drop its gauges."""
    for name, kind, _doc, samples in _remote.pop(source, []):
        if kind in ("counter", "histogram"):
            for sample, labels, value in samples:
                key = (name, sample, tuple(sorted(labels.items())))
                _retired[key] = _retired.get(key, 0.0) + value


class _Merged:
    """A registry view for ``generate_latest``: this process's families plus the remote series."""

    def collect(self) -> Iterator[Metric]:
        extra: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        meta: dict[str, tuple[str, str]] = {}
        for (name, sample, labels), value in _retired.items():
            series = extra.setdefault(name, {})
            series[(sample, labels)] = series.get((sample, labels), 0.0) + value
        for snap in list(_remote.values()):
            for name, kind, doc, samples in snap:
                meta.setdefault(name, (kind, doc))
                series = extra.setdefault(name, {})
                for sample, labels, value in samples:
                    key = (sample, tuple(sorted(labels.items())))
                    series[key] = series.get(key, 0.0) + value
        for family in REGISTRY.collect():
            series = extra.pop(family.name, None)
            if series:
                family = _with(family, series)
            yield family
        for name, series in extra.items():
            kind, doc = meta.get(name, ("untyped", ""))
            yield _with(Metric(name, doc, kind), series)


def _with(family: Metric, series: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Metric:
    merged = Metric(family.name, family.documentation, family.type, family.unit)
    seen = set()
    for s in family.samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        seen.add(key)
        merged.add_sample(s.name, s.labels, s.value + series.get(key, 0.0), s.timestamp, s.exemplar)
    for (sample, labels), value in series.items():
        if (sample, labels) not in seen:
            merged.add_sample(sample, dict(labels), value)
    return merged


MERGED = _Merged()


def registry() -> _Merged:
    """What ``/metrics`` shows: this process's metrics and the outbox worker process's."""
    return MERGED
