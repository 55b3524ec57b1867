"""Obfuscators computed ahead of need, in a worker process, while the site trains."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

from . import _obfuscation_worker as worker


class ObfuscatorPool:
    """`request(k)` starts computing k obfuscators in the background; `take(k)` returns k of them."""

    def __init__(self, n: int, h_n: int, *, workers: int = 1) -> None:
        self._n, self._h_n = n, h_n
        self._ready: list[int] = []
        self._pending: list[Future] = []
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None
        if workers > 0:
            # spawn: a fork of a process holding torch threads is not safe.
            self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def request(self, count: int) -> None:
        if self._executor is None or count <= 0:
            return
        chunk = -(-count // self._workers)
        for start in range(0, count, chunk):
            self._pending.append(self._executor.submit(worker.make_obfuscators, self._n, self._h_n,
                                                       min(chunk, count - start)))

    def take(self, count: int) -> list[int]:
        while len(self._ready) < count and self._pending:
            self._ready.extend(self._pending.pop(0).result())
        if len(self._ready) < count:
            self._ready.extend(worker.make_obfuscators(self._n, self._h_n, count - len(self._ready)))
        out, self._ready = self._ready[:count], self._ready[count:]
        return out

    def close(self) -> None:
        if self._executor is not None:
            for f in self._pending:
                f.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
