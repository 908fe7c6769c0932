"""MLLP over TLS and the allowlist, against a real engine process (uvloop) and an in-process one.

Certificates are made in the test. The engine serves five channels: TLS (minimum 1.2), TLS 1.3
only, mutual TLS with our CA, mutual TLS behind an allowlist of 127.0.0.1, and plain TCP behind
the same allowlist. Clients connect from 127.0.0.1 (allowed) or bind 127.0.0.2 (not allowed).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import running_engine, scrape, write_channel
from tests.faults.engine_process import EngineProcess, free_port
from tests.mllp_client import AsyncMllpClient, msa, siu

from .certs import Pki, make_pki

CHANNELS = ("tls", "tls13", "mtls", "guarded", "plain_guarded", "tls_one")
REFUSED = (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError)


class TlsEngine:
    """The running engine process, its certificates and each channel's port."""

    def __init__(self, engine: EngineProcess, pki: Pki, ports: dict[str, int]) -> None:
        self.engine, self.pki, self.ports = engine, pki, ports

    async def count(self, channel: str, result: str) -> float:
        return await self.engine.metric("radsched_connections_total", channel=channel, result=result)


def channel_files(pki: Pki, ports: dict[str, int]) -> dict[str, str]:
    cert = f"cert: {pki.server.cert}, key: {pki.server.key}"
    mtls = f"{cert}, client_ca: {pki.ca.cert}"
    body = "pipeline: [parse, validate]\n"
    return {
        "tls": f"listen: 127.0.0.1:{ports['tls']}\ntls: {{{cert}}}\n{body}",
        "tls13": f"listen: 127.0.0.1:{ports['tls13']}\ntls: {{{cert}, min_version: '1.3'}}\n{body}",
        "mtls": f"listen: 127.0.0.1:{ports['mtls']}\ntls: {{{mtls}}}\n{body}",
        "guarded": f"listen: 127.0.0.1:{ports['guarded']}\ntls: {{{mtls}}}\nallow: [127.0.0.1/32]\n{body}",
        "plain_guarded": f"listen: 127.0.0.1:{ports['plain_guarded']}\nallow: [127.0.0.1]\n{body}",
        "tls_one": f"listen: 127.0.0.1:{ports['tls_one']}\ntls: {{{cert}}}\nlimits: {{max_connections: 1}}\n"
                   f"{body}",
    }


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEngine]:
    workdir = tmp_path_factory.mktemp("tls-engine")
    pki = make_pki(workdir / "pki")
    ports = {name: free_port() for name in CHANNELS}
    engine = EngineProcess(workdir, channel_files(pki, ports))
    engine.start()
    try:
        asyncio.run(engine.ready())
        yield TlsEngine(engine, pki, ports)
    finally:
        engine.terminate()
        code = engine.wait(60)
        engine.stop()
    assert code == 0, engine.log_text()


def client_context(pki: Pki, cert: object = None) -> ssl.SSLContext:
    """A verifying client context (our CA, host name 'localhost'); ``cert`` is a Pair or None."""
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)  # type: ignore[attr-defined]
    return ctx


async def connect(port: int, ctx: ssl.SSLContext | None, source: str = "127.0.0.1") -> AsyncMllpClient:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost" if ctx else None,
        local_addr=(source, 0), ssl_handshake_timeout=10 if ctx else None)
    return AsyncMllpClient(reader, writer)


async def answered(port: int, ctx: ssl.SSLContext | None, control_id: str,
                   source: str = "127.0.0.1") -> tuple[list[str] | None, str | None]:
    """(MSA fields, TLS version) of one message, or (None, None) when the engine refused us."""
    try:
        client = await connect(port, ctx, source)
    except REFUSED:
        return None, None
    try:
        tls = client.writer.get_extra_info("ssl_object")
        reply = await client.request(siu(control_id), timeout=15)
    except REFUSED:
        return None, None
    finally:
        await client.close()
    return (msa(reply) if reply is not None else None), (tls.version() if tls else None)


def events(tls_engine: TlsEngine, name: str, channel: str) -> list[dict]:
    return [e for e in tls_engine.engine.events(name) if e.get("channel") == channel]


async def settled(tls_engine: TlsEngine, channel: str, result: str, expected: float) -> None:
    """Wait (hang guard only) until the engine has counted the connection we just made."""
    async with asyncio.timeout(30):
        while await tls_engine.count(channel, result) < expected:
            await asyncio.sleep(0.05)


# -- TLS -----------------------------------------------------------------------------------------
async def test_tls_client_verifies_the_engine_and_gets_aa(tls_engine: TlsEngine) -> None:
    port = tls_engine.ports["tls"]
    reply, version = await answered(port, client_context(tls_engine.pki), "TLS-1")
    assert reply is not None and reply[1:3] == ["AA", "TLS-1"]
    assert version in ("TLSv1.2", "TLSv1.3")
    tls12 = client_context(tls_engine.pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    reply, version = await answered(port, tls12, "TLS-2")
    assert reply is not None and reply[1:3] == ["AA", "TLS-2"] and version == "TLSv1.2"


def legacy_client() -> ssl.SSLContext:
    """A client that speaks only TLS 1.0/1.1 (what an old RIS might still do)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def legacy_handshake_possible(pki: Pki) -> bool:
    """Whether this OpenSSL can do a TLS 1.1 handshake at all (with a server that allows it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1
        server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    server_ctx.load_cert_chain(pki.server.cert, pki.server.key)
    listener = socket.create_server(("127.0.0.1", 0))
    result: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                result.append(tls.version() or "")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                legacy_client().wrap_socket(raw) as tls:
            version = tls.version()
    except (ssl.SSLError, OSError):
        version = None
    finally:
        thread.join(10)
        listener.close()
    return version == "TLSv1.1"


async def test_a_tls_1_1_client_is_refused_and_counted(tls_engine: TlsEngine) -> None:
    if not legacy_handshake_possible(tls_engine.pki):
        pytest.skip("this OpenSSL cannot make a TLS 1.1 handshake even with a willing server")
    before = await tls_engine.count("tls", "tls_failed")
    reply, _ = await answered(tls_engine.ports["tls"], legacy_client(), "OLD-1")
    assert reply is None
    await settled(tls_engine, "tls", "tls_failed", before + 1)
    failures = events(tls_engine, "tls_handshake_failed", "tls")
    assert failures and failures[-1]["peer"].startswith("127.0.0.1:")


async def test_a_tls_1_3_channel_refuses_tls_1_2(tls_engine: TlsEngine) -> None:
    port = tls_engine.ports["tls13"]
    tls12 = client_context(tls_engine.pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert (await answered(port, tls12, "V12"))[0] is None
    reply, version = await answered(port, client_context(tls_engine.pki), "V13")
    assert reply is not None and reply[1] == "AA" and version == "TLSv1.3"


async def test_plain_mllp_on_a_tls_port_gets_no_answer(tls_engine: TlsEngine) -> None:
    before = await tls_engine.count("tls", "tls_failed")
    reply, _ = await answered(tls_engine.ports["tls"], None, "CLEAR-1")
    assert reply is None
    await settled(tls_engine, "tls", "tls_failed", before + 1)


# -- mutual TLS ----------------------------------------------------------------------------------
async def test_mtls_refuses_a_client_without_a_certificate(tls_engine: TlsEngine) -> None:
    before = await tls_engine.count("mtls", "tls_failed")
    reply, _ = await answered(tls_engine.ports["mtls"], client_context(tls_engine.pki), "NOCERT")
    assert reply is None
    await settled(tls_engine, "mtls", "tls_failed", before + 1)


async def test_mtls_refuses_a_certificate_from_another_ca(tls_engine: TlsEngine) -> None:
    pki = tls_engine.pki
    before = await tls_engine.count("mtls", "tls_failed")
    accepted = await tls_engine.count("mtls", "accepted")
    reply, _ = await answered(tls_engine.ports["mtls"], client_context(pki, pki.foreign_client), "FOREIGN")
    assert reply is None
    await settled(tls_engine, "mtls", "tls_failed", before + 1)
    assert await tls_engine.count("mtls", "accepted") == accepted


async def test_mtls_accepts_our_client_and_logs_its_subject(tls_engine: TlsEngine) -> None:
    pki = tls_engine.pki
    reply, _ = await answered(tls_engine.ports["mtls"], client_context(pki, pki.client), "GOOD-1")
    assert reply is not None and reply[1:3] == ["AA", "GOOD-1"]

    async def logged() -> list[dict]:
        async with asyncio.timeout(30):
            while not (found := events(tls_engine, "connection_open", "mtls")):
                await asyncio.sleep(0.1)
        return found

    opened = await logged()
    assert all(e.get("tls_subject") for e in opened)
    assert f"commonName={pki.client_cn}" in opened[-1]["tls_subject"]
    assert opened[-1]["peer"].startswith("127.0.0.1:")


# -- allowlist -----------------------------------------------------------------------------------
async def test_allowlist_refuses_before_the_tls_handshake_and_counts(tls_engine: TlsEngine) -> None:
    pki = tls_engine.pki
    port = tls_engine.ports["guarded"]
    refused = await tls_engine.count("guarded", "refused_allowlist")
    failed = await tls_engine.count("guarded", "tls_failed")
    # From 127.0.0.2 even a good certificate does not help; without one it is the allowlist,
    # not the handshake, that refuses (the peer never gets to TLS).
    assert (await answered(port, client_context(pki, pki.client), "OUT-1", "127.0.0.2"))[0] is None
    assert (await answered(port, client_context(pki), "OUT-2", "127.0.0.2"))[0] is None
    await settled(tls_engine, "guarded", "refused_allowlist", refused + 2)
    assert await tls_engine.count("guarded", "tls_failed") == failed
    reply, _ = await answered(port, client_context(pki, pki.client), "IN-1")
    assert reply is not None and reply[1:3] == ["AA", "IN-1"]
    logged = events(tls_engine, "connection_refused", "guarded")
    assert logged and all(e["reason"] == "allowlist" for e in logged)
    assert logged[-1]["peer"].startswith("127.0.0.2:")


async def test_allowlist_on_plain_tcp(tls_engine: TlsEngine) -> None:
    port = tls_engine.ports["plain_guarded"]
    refused = await tls_engine.count("plain_guarded", "refused_allowlist")
    accepted = await tls_engine.count("plain_guarded", "accepted")
    assert (await answered(port, None, "OUT-3", "127.0.0.2"))[0] is None
    reply, _ = await answered(port, None, "IN-2")
    assert reply is not None and reply[1:3] == ["AA", "IN-2"]
    await settled(tls_engine, "plain_guarded", "refused_allowlist", refused + 1)
    assert await tls_engine.count("plain_guarded", "accepted") == accepted + 1


async def test_connection_limit_refuses_before_the_tls_handshake(tls_engine: TlsEngine) -> None:
    port = tls_engine.ports["tls_one"]
    ctx = client_context(tls_engine.pki)
    limited = await tls_engine.count("tls_one", "refused_limit")
    failed = await tls_engine.count("tls_one", "tls_failed")
    first = await connect(port, ctx)
    try:
        reply = await first.request(siu("ONE-1"), timeout=15)
        assert reply is not None and msa(reply)[1] == "AA"
        assert (await answered(port, ctx, "ONE-2"))[0] is None       # over the limit of one
        await settled(tls_engine, "tls_one", "refused_limit", limited + 1)
        assert await tls_engine.count("tls_one", "tls_failed") == failed
    finally:
        await first.close()


# -- the same on the asyncio event loop (in-process engine) ---------------------------------------
async def test_in_process_engine_mtls_and_allowlist(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    mtls = f"cert: {pki.server.cert}, key: {pki.server.key}, client_ca: {pki.ca.cert}"
    write_channel(tmp_path / "channels", "guarded",
                  f"listen: 127.0.0.1:0\ntls: {{{mtls}}}\nallow: [127.0.0.1]\npipeline: [parse, validate]\n")
    async with running_engine(tmp_path / "channels", tmp_path / "data") as engine:
        port = engine.servers[0].port

        async def count(result: str) -> float:
            _, text = await scrape(engine.http.port)
            line = f'radsched_connections_total{{channel="guarded",result="{result}"}} '
            return next((float(ln.rpartition(" ")[2]) for ln in text.splitlines()
                         if ln.startswith(line)), 0.0)

        base = {r: await count(r) for r in ("accepted", "refused_allowlist", "tls_failed")}
        reply, _ = await answered(port, client_context(pki, pki.client), "IP-1")
        assert reply is not None and reply[1:3] == ["AA", "IP-1"]
        assert (await answered(port, client_context(pki), "IP-2"))[0] is None
        assert (await answered(port, client_context(pki, pki.foreign_client), "IP-3"))[0] is None
        assert (await answered(port, client_context(pki), "IP-4", "127.0.0.2"))[0] is None
        deadline = time.monotonic() + 30              # hang guard for the counters to settle
        want = {"accepted": 1, "refused_allowlist": 1, "tls_failed": 2}
        while True:
            got = {r: await count(r) - base[r] for r in want}
            if got == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert got == want
        while engine.servers[0].connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)             # closed connections are all forgotten
        assert engine.servers[0].connections == set()
