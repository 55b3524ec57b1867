"""A bound on how long a party waits for another party's message.

FATE 2.2's RabbitMQ federation waits for a message without any timeout (pika's blocking
`consume`, fate/arch/federation/backends/rabbitmq/_mq_channel.py), and FATE-Flow does not
notice when another site's FATE-Flow is gone (its federated detector is empty,
fate_flow/scheduler/detector.py). A party whose peer died would wait until the task timeout,
three days by default. This watchdog pulls from one party at a time, so it knows whom it is
waiting for, and when a wait exceeds `timeout_s` it logs which party went silent and ends the
task process: its FATE-Flow then fails the job and stops the other parties' tasks.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable

logger = logging.getLogger(__name__)


class FederationWatchdog:
    def __init__(self, timeout_s: float, label: Callable[[object], str] = str,
                 on_timeout: Callable[[str], None] | None = None) -> None:
        self.timeout_s = float(timeout_s)
        self._label = label
        self._on_timeout = on_timeout or _end_task
        self._waiting: tuple[float, str] | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fate-lung-federation-watchdog", daemon=True)
        self._thread.start()

    def install(self, federation) -> "FederationWatchdog":
        """Route `federation`'s pulls through the watchdog, one party at a time."""
        pull_bytes, pull_table = federation.pull_bytes, federation.pull_table

        def one_by_one(pull):
            def pull_each(name, tag, parties, **kwargs):
                out = []
                for party in parties:
                    with self.waiting(f"'{name}' from {self._label(party)}"):
                        out.extend(pull(name=name, tag=tag, parties=[party], **kwargs))
                return out
            return pull_each

        federation.pull_bytes = one_by_one(pull_bytes)

        def pull_table_each(name, tag, parties, table_metas=None):
            out = []
            for i, party in enumerate(parties):
                metas = None if table_metas is None else [table_metas[i]]
                with self.waiting(f"'{name}' from {self._label(party)}"):
                    out.extend(pull_table(name=name, tag=tag, parties=[party], table_metas=metas))
            return out

        federation.pull_table = pull_table_each
        return self

    def waiting(self, what: str) -> "_Wait":
        return _Wait(self, what)

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(0.5):
            with self._lock:
                waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[0] > self.timeout_s:
                self._on_timeout(f"Federation timeout: no message {waiting[1]} for {self.timeout_s:.0f} s; that "
                                 f"party's site is gone or stalled (federation_timeout={self.timeout_s:.0f} s)")
                with self._lock:
                    self._waiting = None


class _Wait:
    def __init__(self, watchdog: FederationWatchdog, what: str) -> None:
        self._watchdog, self._what = watchdog, what

    def __enter__(self) -> None:
        with self._watchdog._lock:
            self._watchdog._waiting = (time.monotonic(), self._what)

    def __exit__(self, *exc) -> None:
        with self._watchdog._lock:
            self._watchdog._waiting = None


def _end_task(message: str) -> None:
    # The main thread is blocked inside pika and cannot be interrupted; the task process ends here,
    # after its error is on record, and its FATE-Flow fails the job. Its workers (FATE's standalone
    # computing pool) go first: they hold the task's output pipes, and FATE-Flow's entrypoint waits
    # for those to close before it reports the task as ended.
    import psutil

    logger.error(message)
    print(message, file=sys.stderr, flush=True)
    for handler in logging.getLogger().handlers:
        handler.flush()
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass
    os._exit(3)
