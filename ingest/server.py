"""Serving the edge with uvicorn (uvloop, httptools), one or more worker processes."""

from __future__ import annotations

import logging
import signal

import uvicorn

from contract.settings import Settings

logger = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """Blocks until SIGTERM/SIGINT; uvicorn then stops accepting and the lifespan flushes."""
    logger.info(
        "edge listening on http://%s:%d with %d worker(s)",
        settings.ingest_host,
        settings.ingest_port,
        settings.ingest_workers,
    )
    if settings.ingest_workers == 1:
        from ingest.app import create_app

        app: object = create_app(settings)
    else:
        # Worker processes build their own app from the environment (the CLI exported
        # its flags there), so the import string is what uvicorn needs.
        app = "ingest.app:create_app"
    # uvicorn restores the previous handlers after its graceful shutdown and re-raises the
    # signal; a no-op handler here turns a clean SIGTERM/SIGINT stop into exit status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        app,  # type: ignore[arg-type]
        factory=settings.ingest_workers > 1,
        host=settings.ingest_host,
        port=settings.ingest_port,
        workers=settings.ingest_workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        backlog=4096,
    )
