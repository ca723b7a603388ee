"""Running a whole notebook top to bottom with nbclient, inside the sandboxed worker (`grade --execute`).

The kernel is started by the worker (the `execute` plan mode), so it lives inside the same sandbox
(namespaces, rlimits, scrubbed environment, no network), with a per-cell timeout. Every cell's outcome
goes back on the answer channel; grader.sandbox.notebook_run turns those frames into the report's
NotebookExecution. It never changes the score.
"""

import os
import re
import signal
import time

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _cell_error(cell) -> tuple[str, str]:
    """(`Name: value`, traceback) of a failed cell, from its error output."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            text = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
            tb = ANSI.sub("", "\n".join(output.get("traceback", [])))
            return text[:500], tb[-4000:]
    return "the cell failed", ""


class Watchdog:
    """The per-cell timeout: interrupt the kernel when a cell runs too long, kill it if that is not enough.

    nbclient's own timeout does not fire over the ipc transport (used because a sandbox's network
    namespace may have no loopback), so the worker keeps time itself.
    """

    def __init__(self, pid: int | None, seconds: float, grace: float = 5.0):
        import threading

        self.pid = pid
        self.fired = False
        self._timers = [threading.Timer(seconds, self._signal, (signal.SIGINT,)),
                        threading.Timer(seconds + grace, self._signal, (signal.SIGKILL,))]
        for timer in self._timers:
            timer.daemon = True
            timer.start()

    def _signal(self, number) -> None:
        self.fired = True
        if self.pid:
            try:
                os.kill(self.pid, number)
            except OSError:
                pass

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


def run_notebook(plan: dict, channel_fd: int) -> None:
    """Execute the notebook top to bottom; one frame per cell on the channel, then `done`."""
    from grader.sandbox.inside import channel

    def send(meta: dict) -> None:
        channel.send(channel_fd, meta)

    try:
        import nbformat
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        nb = nbformat.read(plan["notebook"], as_version=4)
        code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        for _, cell in code:
            cell.outputs, cell.execution_count = [], None
        send({"type": "execution_start", "cells": len(code)})
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(plan["cwd"], "kernel"))
        client = NotebookClient(nb, km=km, timeout=plan["cell_timeout"] + 10, startup_timeout=plan["startup_timeout"],
                                allow_errors=False, shutdown_kernel="immediate",
                                resources={"metadata": {"path": plan["cwd"]}})
        with client.setup_kernel():
            send({"type": "kernel_ready"})
            pid = getattr(getattr(km, "provisioner", None), "pid", None)
            for index, cell in code:
                send({"type": "cell_start", "cell": index + 1})
                started = time.perf_counter()
                result = {"type": "cell_end", "cell": index + 1, "status": "ok"}
                watchdog = Watchdog(pid, plan["cell_timeout"])
                try:
                    client.execute_cell(cell, index)
                except (CellTimeoutError, CellExecutionError, DeadKernelError) as err:
                    if watchdog.fired or isinstance(err, CellTimeoutError):
                        result.update(status="timeout", error=f"did not finish within {plan['cell_timeout']:g} s")
                    elif isinstance(err, DeadKernelError):
                        result.update(status="error", error="the kernel died; often: out of memory or CPU time")
                    else:
                        error, tb = _cell_error(cell)
                        result.update(status="failed", error=error, traceback=tb)
                finally:
                    watchdog.cancel()
                result["seconds"] = time.perf_counter() - started
                send(result)
                if result["status"] != "ok":
                    break
    except Exception as err:  # noqa: BLE001 - a notebook nbformat cannot read, a kernel that does not start
        send({"type": "execution_error", "message": f"{type(err).__name__}: {ANSI.sub('', str(err))[:500]}"})
    send({"type": "done"})
