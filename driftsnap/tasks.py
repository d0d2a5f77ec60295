"""Two asyncio habits of the house, in one place: waits that a stop ends, and shielded threads.

Every room that waits (the chain clock, the tick flow, the daemon) waits through
:func:`wait_for_event`, so a stop is seen at once; every blocking call whose outcome must be
known (a commit, the writer lock's session) runs through :func:`shielded`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

_T = TypeVar("_T")


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``event``; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()


async def shielded(fn: Callable[..., _T], *args: Any, name: str) -> _T:
    """``fn(*args)`` in a worker thread, shielded: a stop or a cancellation that arrives meanwhile
    waits for it, so the process never leaves with a commit (or a lock session) in flight whose
    outcome it does not know. A thread cannot be interrupted anyway."""
    task = asyncio.create_task(asyncio.to_thread(fn, *args), name=name)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # its failure is the cancelled caller's; not ours
            await task
        raise
