"""`aisuper up` from start to end: checks, start, then (unless detached) supervision until
SIGINT/SIGTERM or until a process dies."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from aisuper.platform.embedded.broker import log_tail
from aisuper_cli.platform_runner import (
    DEFAULT_STOP_TIMEOUT_S,
    Running,
    UpOptions,
    UpView,
    plan_up,
    start,
    startup_lock,
    stop_running,
)
from aisuper_cli.state import Layout


async def _first(task: asyncio.Task[Running], stop: asyncio.Event) -> Running | None:
    """`task`'s result, or None (after cancelling it) when `stop` is set first."""
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


async def up(options: UpOptions, view: UpView) -> int:
    """Start the platform; with ``detach`` return once it serves, else supervise it until
    SIGINT/SIGTERM (exit 0) or until one of its processes dies (exit 1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    began = time.monotonic()
    layout = Layout.of(options.data_dir)
    with startup_lock(layout):
        plan = plan_up(options)
        view.planned(plan)
        running = await _first(asyncio.create_task(start(plan, view)), stop)
    if running is None:
        view.stopping("interrupted while starting")
        view.stopped([])
        return 128 + (received[0] if received else signal.SIGINT)  # the shell's convention
    view.ready(plan, running.state, time.monotonic() - began)
    if options.detach:
        return 0
    return await supervise(running, stop, view)


async def supervise(running: Running, stop: asyncio.Event, view: UpView) -> int:
    """Wait for `stop` or for a process to exit; then stop everything."""
    crashed: tuple[str, int] | None = None
    while not stop.is_set():
        for name, process in running.processes.items():
            code = process.poll()
            if code is not None:
                crashed = (name, code)
                break
        if crashed is not None:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    if crashed is None:
        view.stopping("asked to stop")
        view.stopped(stop_running(running, timeout=DEFAULT_STOP_TIMEOUT_S))
        return 0
    name, code = crashed
    log_file = running.plan.layout.log_file(name)
    view.stopping(
        f"{name} exited with code {code}; last lines of {log_file}:\n{log_tail(log_file)}"
    )
    view.stopped(stop_running(running, timeout=DEFAULT_STOP_TIMEOUT_S))
    return 1
