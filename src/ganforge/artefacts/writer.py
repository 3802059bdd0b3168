"""Artefact writes off the training thread, so a GPU never waits for a PNG encoder."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable


class BackgroundWriter:
    """Runs artefact writes (PNG grids) on one worker thread, in order.

    ``submit(fn, *args, ready=event)`` returns at once; the worker waits for the CUDA event
    (the device-to-host copy of the images) and then calls ``fn``. Errors surface at the
    next ``submit`` or at ``drain``, so a failed write is never lost. With ``enabled=False``
    everything runs inline (CPU runs, tests).
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any, ready: Any = None) -> None:
        self._raise_pending()
        if not self.enabled:
            if ready is not None:
                ready.synchronize()
            fn(*args)
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="ganforge-artefacts", daemon=True
            )
            self._thread.start()
        self._queue.put((fn, args, ready))

    def drain(self) -> None:
        """Wait until every submitted write is done; re-raise the first error."""
        if self._thread is not None:
            self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args, ready = item
                if self._error is None:
                    if ready is not None:
                        ready.synchronize()
                    fn(*args)
            # handed to the training thread
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()
