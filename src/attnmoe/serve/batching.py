"""Work taken in batches by one thread: what queued up while it was busy goes together.

The server predicts the rows of the requests that arrive together in one pass
(:class:`~attnmoe.serve.Predictor.predict_many`) and commits their log records in
one transaction (:class:`~attnmoe.serve.log.GroupCommit`): under load the fixed
cost of a pass, and of a commit's disk sync, is shared by every request in the
batch, and a lone request waits for nobody. Each item carries a
:class:`concurrent.futures.Future` that the batch's handler resolves; an
asyncio caller awaits it with :func:`asyncio.wrap_future`, so no event loop is
tied to the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

#: what :meth:`Batches.close` queues to stop the thread
_STOP = object()


class Batches:
    """A daemon thread that hands ``handle`` every item queued since its last call.

    Parameters
    ----------
    handle
        Called with a list of ``(item, future)`` pairs; it resolves every future
        (an exception it raises is set on those it left unresolved).
    name
        The thread's name.
    max_items
        At most this many items per call.
    """

    def __init__(
        self,
        handle: Callable[[list[tuple[Any, Future]]], None],
        name: str,
        max_items: int = 64,
    ) -> None:
        self.handle = handle
        self.max_items = max_items
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._name = name
        self._start_lock = threading.Lock()

    def submit(self, item: Any) -> Future:
        """Queue ``item``; the future resolves once its batch was handled."""
        if self._thread is None:
            with self._start_lock:  # started on first use: an unused app holds no thread
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def _take(self) -> list[tuple[Any, Future]] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < self.max_items:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is _STOP:
                self._queue.put(_STOP)  # handle this batch, then stop
                break
            batch.append(more)
        return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self.handle(batch)
            except Exception as err:  # the callers get it; the thread goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued items and stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
