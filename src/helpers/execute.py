"""One notebook executed by papermill, as the runner (``helpers.pipeline``) does it: its kernel on local sockets,
Ctrl-C that stops the running cell, and the executed copy kept where a user looks for it.

* ``<name>.ipynb``: the last successful run's copy (replaced only when this run succeeds);
* ``<name>.running.ipynb``: this run's copy while it runs;
* ``<name>.failed.ipynb``: this run's copy when a cell failed, the kernel died or Ctrl-C stopped it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import papermill
from nbclient.exceptions import DeadKernelError
from papermill.exceptions import PapermillExecutionError

KERNEL = "python3"


class NotebookFailed(RuntimeError):
    """A cell raised or the kernel died; the message names the cell, the error and the executed copy."""


def kernel_manager():
    """The kernel manager papermill starts each notebook's kernel with (a new class per call, so that each run has
    its own Ctrl-C flag, ``ctrl_c``).

    * Local IPC sockets on POSIX systems, where ipykernel 7 would otherwise print a warning about unencrypted TCP for
      every notebook (the kernel is local either way); papermill's default elsewhere. Each kernel's sockets get a name
      of their own in the temporary folder: jupyter_client's default, ``kernel-ipc-N`` in the working directory,
      collides when two runs start kernels at once (two pipelines, or the test suite's workers), and the kernel then
      never answers.
    * Ctrl-C interrupts the running cell. The kernel runs in a session of its own, so the terminal's Ctrl-C reaches
      only the runner, where nbclient's own handler merely schedules a shutdown and the notebook runs on to the end
      (measured: exit 0, every cell run). This manager's handler replaces it as the kernel starts: it sets ``ctrl_c``
      and interrupts the kernel once it is up (``KeyboardInterrupt`` in the running cell), which ``execute`` turns
      into a ``KeyboardInterrupt`` of its own."""
    import tempfile
    import uuid

    from jupyter_client import AsyncKernelManager
    from traitlets import Unicode, default

    if os.name != "posix":
        return AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = Unicode("ipc")
        ctrl_c = False
        kernel_log = None

        @default("ip")
        def _unique_ip(self):
            return os.path.join(tempfile.gettempdir(), f"helpers-kernel-{uuid.uuid4().hex[:16]}-ipc")

        async def _async_start_kernel(self, **kwargs):
            if type(self).kernel_log is not None:
                kwargs.setdefault("stderr", type(self).kernel_log)
            try:  # in place of nbclient's handler, which it installed just before starting the kernel
                asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_ctrl_c)
            except (RuntimeError, NotImplementedError):  # not the main thread: the default behaviour stays
                pass
            await super()._async_start_kernel(**kwargs)
            if type(self).ctrl_c:  # pressed while the kernel started: stop before the first cell
                raise KeyboardInterrupt

        start_kernel = _async_start_kernel

        def _on_ctrl_c(self):
            type(self).ctrl_c = True
            if self.has_kernel:
                asyncio.ensure_future(self.interrupt_kernel())

    return IPCKernelManager


@contextmanager
def kernel_log(manager, path: Path):
    """Send what the kernel process itself writes to its standard error (C libraries' messages, below Python's
    ``sys.stderr``, which papermill captures into the notebook) to ``path``, kept only if something was written. A
    ZeroMQ assertion printed by a kernel stopped by Ctrl-C would otherwise land on the runner's terminal."""
    if not hasattr(manager, "kernel_log"):  # papermill's default manager (not POSIX): the kernel shares the terminal
        yield
        return
    try:
        with open(path, "w") as log:
            manager.kernel_log = log
            yield
    finally:
        manager.kernel_log = None
        text = path.read_text(errors="replace")
        kept = "".join(line for line in text.splitlines(keepends=True) if line.strip() != SHUTDOWN_NOISE)
        if not kept.strip():
            path.unlink()
        else:
            if kept != text:
                path.write_text(kept)
            print(f"[pipeline] the kernel process printed outside the notebook; kept in {path}", flush=True)


# The kernel is stopped at once after the last cell (``shutdown_kernel="immediate"``: its process group killed),
# not asked to shut down: by then nbclient has every output, and a kernel holding torch took 1-3 s to exit, once per
# notebook. Asked to shut down (papermill's default), jupyter_client first interrupts it (``shutdown_kernel`` sends
# SIGINT before the shutdown request) and an idle ipykernel sometimes logs this line about it, which says nothing
# about the notebook; it is dropped from the kernel's log in case a kernel is shut down that way.
SHUTDOWN_NOISE = "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel."


def execute(nb: Path, out: Path, parameters: dict, log_output: bool = False) -> None:
    """Run notebook ``nb`` with ``parameters`` in its own folder, writing the executed copy to ``out`` (see the
    module's docstring for the three copies). Raises ``NotebookFailed`` with a message for the user, or
    ``KeyboardInterrupt`` after Ctrl-C (the stopped copy kept as ``.failed.ipynb``)."""
    running = out.with_name(f"{nb.stem}.running.ipynb")  # the last good copy stays until this succeeds
    failed = out.with_name(f"{nb.stem}.failed.ipynb")
    log = out.with_name(f"{nb.stem}.kernel.log")
    manager = kernel_manager()
    kept = f"\n  the last successful run's copy is kept: {out}" if out.exists() else ""

    def stopped():
        if not running.exists():
            return KeyboardInterrupt(f"{nb.name} stopped by Ctrl-C before its first cell")
        running.replace(failed)
        return KeyboardInterrupt(f"{nb.name} stopped by Ctrl-C; what ran is in {failed}")

    try:
        with kernel_log(manager, log):
            papermill.execute_notebook(str(nb), str(running), parameters=parameters, kernel_name=KERNEL,
                                       cwd=str(nb.parent), progress_bar=False, log_output=log_output,
                                       kernel_manager_class=manager, shutdown_kernel="immediate")
    except PapermillExecutionError as err:
        if getattr(manager, "ctrl_c", False):
            raise stopped() from None
        running.replace(failed)
        first_line = (err.source or "").strip().splitlines()[:1]
        raise NotebookFailed(
            f"{nb.name} failed in cell {err.cell_index} of the executed copy (execution count {err.exec_count}, "
            f"starting {first_line[0] if first_line else ''!r}): {err.ename}: {err.evalue}\n"
            f"  executed copy with the traceback: {failed}{kept}") from None
    except KeyboardInterrupt:
        raise stopped() from None
    except Exception as err:  # a kernel that died (during a cell, or before it answered), or a stopped one
        if getattr(manager, "ctrl_c", False):
            raise stopped() from None
        if running.exists():
            running.replace(failed)
        if not isinstance(err, DeadKernelError) and "Kernel died" not in str(err):
            raise
        raise NotebookFailed(
            f"{nb.name}: the notebook's kernel died (most often out of memory: lower the batch sizes or the number of "
            f"samples in the preset); what ran is in {failed}, and anything the kernel process printed in "
            f"{log}" + kept.replace("\n  ", "; ")) from None
    if getattr(manager, "ctrl_c", False):  # pressed while no cell ran (between cells, at the kernel's start or end)
        raise stopped()
    running.replace(out)
    failed.unlink(missing_ok=True)
