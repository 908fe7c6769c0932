"""The outbox worker in its own process: it delivers, its log lines and metrics reach the engine's,
it comes back after a crash without counters going back, and it stops when asked."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from radsched_engine import logs, metrics
from radsched_engine.notify.callback import StatusCallback
from radsched_engine.outbox_process import WorkerProcess
from radsched_engine.services import build_services
from radsched_engine.store import Store
from tests.fakes.fake_twilio import FakeTwilio
from tests.faults.engine_process import EngineProcess, free_port, until
from tests.notify.helpers import engine_config, queue_sms

FAST = {"RADSCHED_OUTBOX_POLL_SECONDS": "0.05"}



def exposed(name: str, **labels: str) -> float:
    """The value ``/metrics`` shows for one series (0 when absent)."""
    text = generate_latest(metrics.registry()).decode()  # type: ignore[arg-type]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def statuses(store: Store, ids: list[int]) -> list[str]:
    async with store.connection() as conn:
        rows = await conn.fetch("SELECT status FROM outbox WHERE id = ANY($1) ORDER BY id", ids)
    return [r["status"] for r in rows]


SKIPPED = {"kind": "sms", "result": "skipped_dry_run"}


async def test_deliveries_logs_and_metrics_come_from_the_worker_process(
        store: Store, db_url: str, tmp_path: Path) -> None:
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    try:
        services, background = await build_services(engine_config(db_url, tmp_path), store, FAST)
        worker = services["outbox"]
        assert isinstance(worker, WorkerProcess) and background == [worker]
        before = exposed("radsched_outbox_results_total", **SKIPPED)
        await worker.start()
        try:
            child = worker.process
            assert child.pid != os.getpid() and child.is_alive()
            ids = [await queue_sms(store, f"wp-{n}", f"text {n}") for n in range(3)]

            async def done() -> bool:
                return await statuses(store, ids) == ["skipped"] * 3
            await until(done, 30)

            async def counted() -> bool:           # (snapshots come every quarter second)
                return exposed("radsched_outbox_results_total", **SKIPPED) == before + 3
            await until(counted, 10)
        finally:
            await worker.stop()
        assert worker.process is None and child.exitcode == 0
        logs.flush()
        text = out.getvalue()
        # The child's lines, written by this process: its deliveries, masked, and its stop.
        assert text.count('"event": "outbox_delivery"') == 3
        assert '"event": "outbox_started"' in text and '"event": "outbox_stopped"' in text
        assert "+16175550123" not in text
    finally:
        logs.configure()


async def test_a_crashed_worker_process_comes_back_and_counters_never_go_back(
        store: Store, db_url: str, tmp_path: Path) -> None:
    services, _ = await build_services(engine_config(db_url, tmp_path), store, FAST)
    worker = services["outbox"]
    before = exposed("radsched_outbox_results_total", **SKIPPED)
    await worker.start()
    try:
        first = await queue_sms(store, "crash-1", "before the crash")

        async def counted(n: int) -> bool:
            return exposed("radsched_outbox_results_total", **SKIPPED) == before + n
        await until(lambda: counted(1), 30)
        assert worker.readiness() == {"outbox_process": "up"}
        exits = exposed("radsched_outbox_process_exits_total")
        os.kill(worker.process.pid, signal.SIGKILL)

        async def noticed() -> bool:
            return worker.readiness() == {"outbox_process": "restarting"}
        await until(noticed, 15)
        assert exposed("radsched_outbox_process_exits_total") == exits + 1

        async def restarted() -> bool:
            return worker.starts == 2 and worker.readiness() == {"outbox_process": "up"}
        await until(restarted, 15)
        assert await counted(1)                  # the dead process's count is kept
        second = await queue_sms(store, "crash-2", "after the crash")

        async def both() -> bool:
            return await statuses(store, [first, second]) == ["skipped", "skipped"]
        await until(both, 30)
        await until(lambda: counted(2), 10)
    finally:
        await worker.stop()


async def test_the_worker_process_ends_with_the_engine(store: Store, db_url: str,
                                                       tmp_path: Path) -> None:
    """SIGTERM to the child (a service manager stopping the group) ends it cleanly; the engine
    does not start another one while it stops itself."""
    services, _ = await build_services(engine_config(db_url, tmp_path), store, FAST)
    worker = services["outbox"]
    await worker.start()
    child = worker.process
    await asyncio.sleep(0.5)
    await worker.stop()
    assert child.exitcode == 0 and worker.starts == 1
    await asyncio.sleep(1.5)                      # past the restart pause: nothing came back
    assert worker.process is None and worker.starts == 1
    assert worker.readiness() == {"outbox_process": "stopped"}


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


async def test_the_worker_process_gives_way_to_the_engine(store: Store, db_url: str,
                                                          tmp_path: Path) -> None:
    """It runs below the engine's CPU priority: under ``SCHED_IDLE`` by default (a message
    arriving takes the core from a text being prepared at once), or ``RADSCHED_OUTBOX_NICE``
    nice steps lower; a bad value stops the start-up."""
    for env, policy, lower in (({}, os.SCHED_IDLE, 0),
                               ({"RADSCHED_OUTBOX_NICE": "idle"}, os.SCHED_IDLE, 0),
                               ({"RADSCHED_OUTBOX_NICE": "3"}, os.SCHED_OTHER, 3)):
        services, _ = await build_services(engine_config(db_url, tmp_path), store, {**FAST, **env})
        worker = services["outbox"]
        await worker.start()
        try:
            pid = worker.process.pid
            assert os.sched_getscheduler(pid) == policy
            assert _niceness(pid) == min(19, _niceness(os.getpid()) + lower)
            assert worker.readiness() == {"outbox_process": "up"}
        finally:
            await worker.stop()
    for bad in ("-5", "20", "high"):
        with pytest.raises(ValueError, match="RADSCHED_OUTBOX_NICE must be idle or a whole number"):
            await build_services(engine_config(db_url, tmp_path), store,
                                 {"RADSCHED_OUTBOX_NICE": bad})


def test_remote_series_are_summed_with_local_ones_and_kept_when_their_process_ends() -> None:
    local = metrics.RELOADS.labels("applied")
    base = exposed("radsched_config_reloads_total", result="applied")
    snap: metrics.Snapshot = [
        ("radsched_config_reloads", "counter", "SIGHUP reloads",
         [("radsched_config_reloads_total", {"result": "applied"}, 2.0)]),
        ("radsched_test_remote_depth", "gauge", "only over there",
         [("radsched_test_remote_depth", {"kind": "x"}, 7.0)]),
    ]
    try:
        metrics.set_remote("test", snap)
        local.inc()
        assert exposed("radsched_config_reloads_total", result="applied") == base + 3
        assert exposed("radsched_test_remote_depth", kind="x") == 7.0
        metrics.retire_remote("test")            # the process ended: counters stay, gauges go
        assert exposed("radsched_config_reloads_total", result="applied") == base + 3
        assert exposed("radsched_test_remote_depth", kind="x") == 0.0
    finally:
        metrics._remote.pop("test", None)
        for key in [k for k in metrics._retired if k[0] == "radsched_config_reloads"]:
            metrics._retired[key] -= 2.0


async def test_the_worker_process_does_not_outlive_a_killed_engine(db_url: str, tmp_path: Path) -> None:
    """SIGKILL to the engine (no chance to stop anything): its worker process sees its pipe
    close and ends by itself, leaving no orphan sending texts."""
    port = free_port()
    engine = EngineProcess(tmp_path, {"scheduling": f"""
listen: 127.0.0.1:{port}
pipeline: [parse, validate, persist, notify]
"""}, database_url=db_url)
    try:
        engine.start()
        await engine.ready()
        status, body = engine.get("/readyz")
        assert status == 200 and json.loads(body)["outbox_process"] == "up"
        [started] = engine.events("outbox_process_started")
        child = started["pid"]
        assert _stat(child)[1] == engine.proc.pid          # (state, parent pid)
        engine.kill()

        async def gone() -> bool:
            stat = _stat(child)
            return stat is None or stat[0] == "Z"
        await until(gone, 30)
    finally:
        engine.stop()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    state, ppid = text.rpartition(")")[2].split()[:2]
    return state, int(ppid)


async def test_what_stays_in_the_engine_with_a_worker_process(store: Store, db_url: str, tmp_path: Path,
                                                              twilio_fake: FakeTwilio) -> None:
    """The status-callback route (with a sender of its own, closed with it) and the "AI review
    is on" flag the conflict check reads; the texts and analyses themselves go to the process."""
    env = {**twilio_fake.env(), "RADSCHED_SMS_STATUS_CALLBACK_URL": "https://rad.example.org/cb",
           "ANTHROPIC_API_KEY": "key-for-the-flag-only"}
    services, background = await build_services(engine_config(db_url, tmp_path), store, env)
    worker, callback = background
    assert isinstance(worker, WorkerProcess) and services["outbox"] is worker
    assert worker.spec["env"] == env and worker.spec["url"] == db_url
    assert isinstance(callback, StatusCallback) and callback.owns_sender
    assert callback.path == "/cb" and not callback.sender.dry_run
    assert services["claude"].enabled
    await callback.stop()
    assert callback.sender._transport is None           # its HTTP session closed
