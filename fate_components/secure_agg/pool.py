"""A site's Paillier worker processes (`paillier.workers`): obfuscators ahead of need, and the site's
encryption and decryption split into contiguous chunks, one per process, reassembled in order.

- ``workers = 0``: no process; everything in the site's process (unit tests).
- ``workers = 1``: one process precomputes obfuscators in the background; encryption and
  decryption run in the site's process (a single chunk gains nothing from a trip to a worker).
- ``workers = k > 1``: k processes, each holding the site's key (sent once, over the pipe to its own
  child process); obfuscators, encryption and decryption are split into k contiguous chunks.

Decryption is deterministic, so every split gives the same plaintexts as one worker; ciphertexts
differ between runs anyway (random obfuscators, by design).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from fate_components.core.errors import LungError

from . import _worker as worker
from . import cipher
from ._obfuscation_worker import make_obfuscators
from .keys import PublicKey, SecretKey

__all__ = ["MAX_AUTO_WORKERS", "PaillierPool", "available_cores", "contiguous_chunks", "resolve_workers"]

MAX_AUTO_WORKERS = 16


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def resolve_workers(setting: int | str, colocated_sites: int = 1) -> int:
    """``"auto"``: this process's cores shared among the sites running on this machine, at least 1, at most 16."""
    if setting == "auto":
        return max(1, min(MAX_AUTO_WORKERS, available_cores() // max(1, colocated_sites)))
    return int(setting)


def contiguous_chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) of `parts` contiguous chunks of range(n), sizes within one (empty ones when n < parts)."""
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class PaillierPool:
    """`request(k)` starts k obfuscators in the background; `encrypt` and `decrypt` split across the workers."""

    def __init__(self, public: PublicKey, secret: SecretKey, h_n: int, *, workers: int, site: str) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, not {workers}")
        self._public, self._secret, self._h_n = public, secret, h_n
        self.workers, self.site = workers, site
        self._ready: list[int] = []
        self._pending: list[Future] = []
        self._executor: ProcessPoolExecutor | None = None
        self._warmup: list[Future] = []
        if workers > 0:
            keys = (public.to_bytes(), secret.to_bytes()) if workers > 1 else (None, None)
            # spawn: a fork of a process holding torch threads is not safe.
            self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=worker.init, initargs=(public.n, h_n, *keys))
            # Start every process now (the executor spawns on demand) and build its comb table while the site trains.
            self._warmup = [self._submit(worker.obfuscators, 0) for _ in range(workers)]

    def request(self, count: int) -> None:
        """Start computing `count` obfuscators in the background (split across the workers)."""
        if self._executor is None or count <= 0:
            return
        self._pending.extend(self._submit(worker.obfuscators, end - start) for start, end in self._chunks(count))

    def wait_started(self) -> None:
        """Block until every worker process is up with its comb table (what a benchmark leaves out of a round)."""
        for f in self._warmup:
            self._result(f)

    def fill(self, count: int) -> None:
        """Have `count` obfuscators at hand: those requested first, the rest computed now (split across the workers)."""
        while len(self._ready) < count and self._pending:
            self._ready.extend(self._result(self._pending.pop(0)))
        short = count - len(self._ready)
        if short > 0 and self.workers > 1:
            self._ready.extend(self._gather(worker.obfuscators, [(end - start,) for start, end in self._chunks(short)]))
        elif short > 0:
            self._ready.extend(make_obfuscators(self._public.n, self._h_n, short))

    def take(self, count: int) -> list[int]:
        """`count` obfuscators (see `fill`), handed over once."""
        self.fill(count)
        out, self._ready = self._ready[:count], self._ready[count:]
        return out

    def encrypt(self, plaintexts: list[int]) -> list[int]:
        """Enc(m) for each packed plaintext, with obfuscators from `take`."""
        obfuscators = self.take(len(plaintexts))
        cipher.check_plaintexts(self._public, plaintexts, obfuscators)
        if self.workers <= 1:
            return cipher.encrypt_native(self._public.fate_pk.pk, plaintexts, obfuscators)
        return self._gather(worker.encrypt, [(plaintexts[start:end], obfuscators[start:end])
                                             for start, end in self._chunks(len(plaintexts))])

    def decrypt(self, ciphertexts: list[int]) -> list[int]:
        """FATE's decryption of each ciphertext, in order."""
        if self.workers <= 1:
            return cipher.decrypt_native(self._secret.fate_sk.sk, ciphertexts)
        return self._gather(worker.decrypt, [(ciphertexts[start:end],)
                                             for start, end in self._chunks(len(ciphertexts))])

    def close(self) -> None:
        """Cancel what has not started, wait for what has, and end every worker process."""
        if self._executor is not None:
            for f in self._pending:
                f.cancel()
            self._pending = []
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        return [(start, end) for start, end in contiguous_chunks(n, max(1, self.workers)) if end > start]

    def _gather(self, fn: Callable, chunk_args: list[tuple]) -> list[int]:
        """fn on every chunk at once (one per worker), the results concatenated in chunk order."""
        futures = [self._submit(fn, *args) for args in chunk_args]
        out: list[int] = []
        for f in futures:
            out.extend(self._result(f))
        return out

    def _submit(self, fn: Callable, *args) -> Future:
        if self._executor is None:
            raise LungError(f"Secure aggregation failed at {self.site}: its Paillier workers are closed")
        try:
            return self._executor.submit(fn, *args)
        except BrokenProcessPool as e:
            raise self._crashed(e) from None

    def _result(self, future: Future) -> list[int]:
        try:
            return future.result()
        except BrokenProcessPool as e:
            raise self._crashed(e) from None

    def _crashed(self, e: BaseException) -> LungError:
        return LungError(f"Secure aggregation failed at {self.site}: a Paillier worker process exited unexpectedly "
                         f"({e}); killed, or out of memory? Check the system log, or lower paillier.workers "
                         f"(now {self.workers})")
