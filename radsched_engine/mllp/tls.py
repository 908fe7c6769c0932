"""TLS for MLLP listeners: server context with a minimum version and optional client-CA (mTLS)."""

from __future__ import annotations

import ssl


def server_context(cert: str, key: str, client_ca: str | None = None,
                   min_version: str = "1.2") -> ssl.SSLContext:
    """A server-side SSL context; with ``client_ca`` peers must present a certificate it signed."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
