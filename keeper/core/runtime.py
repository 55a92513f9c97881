"""Process runtime: uvloop, signal handling and exit codes.

SIGINT/SIGTERM cancel the main coroutine; its TaskGroup cancels every task and connections are closed by
their `async with` blocks; exit code 0. Any other exception escaping the main coroutine is logged and
gives exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import uvloop

log = logging.getLogger("keeper.runtime")

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2


async def _with_signals(main: Callable[[], Awaitable[None]]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main())
    stopping = False

    def _stop(signame: str) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("signal received, shutting down signal=%s", signame)
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, sig.name)
    try:
        await task
    except asyncio.CancelledError:
        if stopping:
            log.info("stopped cleanly")
            return EXIT_OK
        raise
    except BaseExceptionGroup as group:
        for exc in group.exceptions:
            log.error("fatal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return EXIT_CRASH
    except Exception as exc:
        log.error("fatal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return EXIT_CRASH
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def run(main: Callable[[], Awaitable[None]]) -> int:
    """Runs `main` on uvloop until it returns or a signal stops it; returns the exit code."""
    return uvloop.run(_with_signals(main))
