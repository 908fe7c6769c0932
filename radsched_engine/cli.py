"""Command line: run | lint | send | stages | migrate | dburl | journal | outbox | conflicts | prune."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .mllp.framing import FrameDecoder, encode


def _load(config_path: str | None):
    from .config import ConfigError, load_channels, load_engine

    try:
        engine_cfg = load_engine(Path(config_path) if config_path else None)
        channels = load_channels(engine_cfg.channels_dir)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"{len(err.problems)} problem(s); not starting", file=sys.stderr)
        raise SystemExit(1) from None
    return engine_cfg, channels


def cmd_run(args: argparse.Namespace) -> int:
    import aiorun

    from . import logs
    from .app import Engine

    engine_cfg, channels = _load(args.config)
    logs.configure(engine_cfg.log.format, engine_cfg.log.level)
    if not channels:
        print(f"no channel files in {engine_cfg.channels_dir}", file=sys.stderr)
        return 1
    engine = Engine(engine_cfg, channels, env=dict(os.environ))
    failed: list[BaseException] = []

    async def main() -> None:
        try:
            await engine.start()
        except Exception as exc:
            failed.append(exc)
            import structlog

            from .datadir import StartupError

            detail = str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
            structlog.get_logger("radsched.app").error("start_failed", error=type(exc).__name__,
                                                      detail=detail[:500])
            print(f"radsched-engine: not started: {detail}", file=sys.stderr)
            await engine.stop(grace=0)
            asyncio.get_running_loop().stop()

    async def shutdown(_loop: asyncio.AbstractEventLoop) -> None:
        if not failed:
            await engine.stop()

    aiorun.run(main(), shutdown_callback=shutdown, use_uvloop=_has_uvloop(),
               timeout_task_shutdown=engine_cfg.shutdown_grace + 5)
    return 1 if failed else 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def cmd_lint(args: argparse.Namespace) -> int:
    from .config import lint_paths

    paths = [Path(p) for p in args.paths]
    if not paths:
        channels_dir = Path(os.environ.get("RADSCHED_CHANNELS_DIR", "channels"))
        paths = [p for p in (Path("config/engine.yaml"), channels_dir) if p.exists()]
    problems = lint_paths(paths)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"ok: {', '.join(str(p) for p in paths)}")
    return 0


def split_messages(data: bytes) -> list[bytes]:
    """Messages in a file: MLLP framing bytes removed, LF/CRLF turned into CR, one per MSH.

    FHS/BHS batches are kept whole (sent as one frame, as a batch is meant to travel).
    """
    data = bytes(b for b in data if b not in (0x0B, 0x1C))
    data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    lines = [ln for ln in data.split(b"\r") if ln.strip()]
    if lines and lines[0][:3] in (b"FHS", b"BHS"):
        return [b"\r".join(lines) + b"\r"]
    messages: list[list[bytes]] = []
    for line in lines:
        if line.startswith(b"MSH") or not messages:
            messages.append([line])
        else:
            messages[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in messages]


def send_frames(host: str, port: int, messages: list[bytes], timeout: float = 30.0):
    """Send each message over one MLLP connection, waiting for each reply; yields replies."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        decoder = FrameDecoder(16 * 1024 * 1024)
        for message in messages:
            sock.sendall(encode(message))
            reply = None
            while reply is None:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed before the reply")
                frames = [e for e in decoder.feed(data) if isinstance(e, bytes)]
                if frames:
                    reply = frames[0]
            yield message, reply


def cmd_send(args: argparse.Namespace) -> int:
    host, _, port = args.address.rpartition(":")
    messages: list[bytes] = []
    for name in args.files:
        messages.extend(split_messages(Path(name).read_bytes()))
    worst = 0
    for _message, reply in send_frames(host or "127.0.0.1", int(port), messages, args.timeout):
        text = reply.decode("latin-1")
        print(text.replace("\r", "\n").rstrip("\n"))
        print()
        msa = next((ln for ln in text.split("\r") if ln.startswith("MSA")), "")
        code = msa[4:6] if len(msa) >= 6 else "??"
        if code not in ("AA", "CA"):
            worst = 2
    return worst


def cmd_stages(_args: argparse.Namespace) -> int:
    from .config.docs import render_stages

    print(render_stages())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from .store import migrate_for_config

    engine_cfg, _ = _load(args.config)
    applied = asyncio.run(migrate_for_config(engine_cfg))
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


def cmd_dburl(args: argparse.Namespace) -> int:
    from .store import database_url_for_config

    engine_cfg, _ = _load(args.config)
    print(database_url_for_config(engine_cfg, show_password=args.show_password))
    return 0


def _database(args: argparse.Namespace) -> tuple[Any, list[Any], str | None]:
    """The configuration, the channels and the URL of the database in use (``_database_url``)."""
    engine_cfg, channels = _load(args.config)
    return engine_cfg, channels, _database_url(args.command, engine_cfg)


def _database_url(command: str, engine_cfg: Any) -> str | None:
    """The URL of the database in use (password included); None, with the reason printed, when
    there is none to use (e.g. no embedded server running)."""
    from .store import database_url_for_config

    try:
        return database_url_for_config(engine_cfg, show_password=True)
    except RuntimeError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return None


def cmd_journal(args: argparse.Namespace) -> int:
    from .store.browse import run

    _, _, url = _database(args)
    if url is None:
        return 1
    code, out = asyncio.run(run(
        url, args.id, raw=args.raw, since=args.since, outcomes=args.outcome or (),
        channel=args.channel, control_id=args.control_id, message_type=args.type,
        contains=args.contains, limit=args.limit))
    if isinstance(out, bytes):
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    else:
        print(out, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_outbox(args: argparse.Namespace) -> int:
    from .notify.admin import run

    _, _, url = _database(args)
    if url is None:
        return 1
    code, text = asyncio.run(run(url, dead=args.dead, retry=args.retry, limit=args.limit))
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_conflicts(args: argparse.Namespace) -> int:
    from .conflicts.report import run

    _, channels, url = _database(args)
    if url is None:
        return 1
    code, text = asyncio.run(run(url, args.appointment, channels=[c.name for c in channels],
                                 as_json=args.json))
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_prune(args: argparse.Namespace) -> int:
    engine_cfg, _ = _load(args.config)
    if not engine_cfg.retention.enabled:
        print("prune: nothing to do: no retention period is configured (engine.yaml, retention:)")
        return 0
    url = _database_url("prune", engine_cfg)
    if url is None:
        return 1
    code, text = asyncio.run(_prune(url, engine_cfg, args.dry_run))
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


async def _prune(url: str, engine_cfg: object, dry_run: bool) -> tuple[int, str]:
    """One retention run now against the database at ``url``: (exit code, what it did)."""
    import asyncpg

    from .store import Store
    from .store.db import failure_reason
    from .store.retention import prune

    db = engine_cfg.database                                  # type: ignore[attr-defined]
    try:
        store = await Store.open(url, pool_min=1, pool_max=1, connect_timeout=db.connect_timeout,
                                 command_timeout=db.command_timeout,
                                 application_name="radsched-engine prune")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return 1, f"prune: database cannot be used: {failure_reason(exc)} ({type(exc).__name__})"
    try:
        report = await prune(store, engine_cfg.retention, dry_run=dry_run)  # type: ignore[attr-defined]
    except asyncpg.UndefinedTableError:
        return 1, "prune: the database schema is older than this engine: run radsched-engine migrate"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return 1, f"prune: failed: {failure_reason(exc)} ({type(exc).__name__})"
    finally:
        await store.close()
    return 0, "\n".join(report.lines())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radsched-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the engine (listeners, pipeline, /metrics)")
    p.add_argument("--config", help="engine config file (default: ./config/engine.yaml if present)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("lint", help="check config and channel files; every problem at once")
    p.add_argument("paths", nargs="*", help="files or directories (default: config/engine.yaml channels/)")
    p.set_defaults(func=cmd_lint)
    p = sub.add_parser("send", help="send HL7 files over MLLP and print each ACK")
    p.add_argument("address", help="HOST:PORT")
    p.add_argument("files", nargs="+")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_send)
    p = sub.add_parser("stages", help="list pipeline stages and their options")
    p.set_defaults(func=cmd_stages)
    p = sub.add_parser("migrate", help="apply database schema migrations")
    p.add_argument("--config")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("dburl", help="print the URL of the database in use (embedded or external)")
    p.add_argument("--config")
    p.add_argument("--show-password", action="store_true")
    p.set_defaults(func=cmd_dburl)
    p = sub.add_parser("journal", help="list journaled messages (newest first), or show one with its "
                                       "message; --raw ID writes its bytes for a resend")
    p.add_argument("id", type=int, nargs="?", help="show this journal row (prints patient data)")
    p.add_argument("--config")
    p.add_argument("--raw", action="store_true", help="with ID: write the message's bytes exactly as "
                                                       "received (for radsched-engine send)")
    p.add_argument("--since", default="24h", help="window: 30m, 24h, 7d or an ISO date/time (default 24h)")
    p.add_argument("--outcome", action="append", metavar="OUTCOME",
                   help="accepted, filtered, duplicate, rejected, retry or error (repeatable)")
    p.add_argument("--channel")
    p.add_argument("--control-id", metavar="MSH-10")
    p.add_argument("--type", metavar="TYPE^TRIGGER", help="e.g. SIU^S12")
    p.add_argument("--contains", metavar="TEXT",
                   help="messages whose bytes contain TEXT (an MRN, an appointment id, ...)")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_journal)
    p = sub.add_parser("outbox", help="list waiting (or --dead) outbox rows; --retry ID re-queues a dead one")
    p.add_argument("--config")
    p.add_argument("--dead", action="store_true", help="list dead-lettered rows instead")
    p.add_argument("--retry", type=int, metavar="ID", help="put dead-lettered row ID back in line")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_outbox)
    p = sub.add_parser("conflicts", help="print an appointment's conflict findings (rules and AI)")
    p.add_argument("appointment", help="row id, stored key, or filler/placer id (F:123, P:45, 123)")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true", help="print the stored JSON")
    p.set_defaults(func=cmd_conflicts)
    p = sub.add_parser("prune", help="run the data pruner once now (retention: in engine.yaml)")
    p.add_argument("--config")
    p.add_argument("--dry-run", action="store_true", help="count what would be pruned, change nothing")
    p.set_defaults(func=cmd_prune)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (ConnectionError, OSError) as exc:
        if args.command != "send":
            raise
        print(f"send failed: {exc}", file=sys.stderr)
        time.sleep(0)
        return 3


if __name__ == "__main__":
    sys.exit(main())
