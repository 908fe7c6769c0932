"""Optional clients and background workers, built once from the environment by the app."""

from __future__ import annotations

from typing import Any


async def build_services(config: Any, store: Any, env: dict[str, str]) -> tuple[dict[str, Any], list[Any]]:
    """(named clients for stages, background workers with async start/stop).

    Clients are created only here, never by stages. Each integration adds itself when its
    configuration (environment) is present and a store exists to hold its outbox.
    """
    services: dict[str, Any] = {}
    background: list[Any] = []
    return services, background
