"""An in-memory federation for unit tests of the protocol: one `MemoryChannel` per party, all in one process.

Values are pickled on the way in and unpickled on the way out, as on a wire, and queued per
(tag path, sender, receiver, name) in thread-safe queues, so a test can run a guest, its hosts
and an arbiter in threads (`run_parties`). Every message is recorded (`MemoryFederation.messages`)
for assertions on who sent what to whom; `tamper` rewrites a party's messages in transit. A
receive waits at most `timeout` seconds, then raises `ChannelTimeout` naming the message, so a
protocol bug fails a test instead of hanging it.
"""
from __future__ import annotations

import pickle
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .channel import FederationError, SiteAddress

__all__ = ["ChannelTimeout", "Message", "MemoryFederation", "MemoryChannel", "run_parties"]


class ChannelTimeout(FederationError):
    """A party waited longer than the channel's timeout for a message that never came."""


@dataclass(frozen=True)
class Message:
    """One message as it crossed the in-memory wire."""

    path: tuple[str, ...]
    sender: str           # a party label: "guest 9999", "host 10000", "arbiter 9999"
    receiver: str
    name: str
    data: bytes           # the pickled value

    @property
    def value(self) -> Any:
        return pickle.loads(self.data)


@dataclass(frozen=True)
class _Party:
    rank: int
    role: str
    party_id: str

    @property
    def label(self) -> str:
        return f"{self.role} {self.party_id}"


class MemoryFederation:
    """The parties, queues and message record of one in-memory federation (guest rank 0, hosts, arbiter last)."""

    def __init__(self, guest: str = "9999", hosts: Sequence[str] = ("10000", "10001"), arbiter: str = "9999", *,
                 timeout: float = 30.0, job_id: str = "memory-job") -> None:
        roles = [("guest", guest), *(("host", h) for h in hosts), ("arbiter", arbiter)]
        self.parties = [_Party(rank, role, str(pid)) for rank, (role, pid) in enumerate(roles)]
        self.timeout = timeout
        self.job_id = job_id
        self.messages: list[Message] = []
        self._queues: dict[tuple, queue.Queue] = {}
        self._tampers: dict[tuple[str, str], Callable[[Any], Any]] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.parties]

    @property
    def sites(self) -> list[SiteAddress]:
        return [SiteAddress(p.rank, p.role, p.party_id) for p in self.parties if p.role != "arbiter"]

    def channel(self, label: str) -> "MemoryChannel":
        """The root channel of the party labelled `label` (e.g. ``"host 10000"``)."""
        for party in self.parties:
            if party.label == label:
                return MemoryChannel(self, party, ())
        raise KeyError(f"no party {label!r} in this federation; parties: {self.labels}")

    def tamper(self, sender: str, name: str, rewrite: Callable[[Any], Any]) -> None:
        """From now on, every message `name` that `sender` sends arrives as `rewrite(value)`."""
        self._tampers[(sender, name)] = rewrite

    def between(self, sender: str, receiver: str) -> list[Message]:
        return [m for m in self.messages if m.sender == sender and m.receiver == receiver]

    def _queue(self, key: tuple) -> queue.Queue:
        with self._lock:
            return self._queues.setdefault(key, queue.Queue())

    def _send(self, path: tuple[str, ...], sender: _Party, receiver: _Party, name: str, value: Any) -> None:
        rewrite = self._tampers.get((sender.label, name))
        data = pickle.dumps(rewrite(value) if rewrite else value)
        with self._lock:
            self.messages.append(Message(path, sender.label, receiver.label, name, data))
        self._queue((path, sender.rank, receiver.rank, name)).put(data)

    def _receive(self, path: tuple[str, ...], sender: _Party, receiver: _Party, name: str) -> Any:
        try:
            data = self._queue((path, sender.rank, receiver.rank, name)).get(timeout=self.timeout)
        except queue.Empty:
            raise ChannelTimeout(f"{receiver.label} waited {self.timeout:g} s for {name!r} from {sender.label} "
                                 f"under {'/'.join(path) or '(root)'}: no such message came (a party stopped, "
                                 f"or the parties are out of step)") from None
        return pickle.loads(data)


class MemoryChannel:
    """One party's `Channel` into a `MemoryFederation` under one tag path."""

    def __init__(self, federation: MemoryFederation, party: _Party, path: tuple[str, ...]) -> None:
        self._fed, self._party, self._path = federation, party, path

    def sub(self, tag: str) -> "MemoryChannel":
        return MemoryChannel(self._fed, self._party, (*self._path, tag))

    @property
    def exchange_id(self) -> str:
        return "/".join((self._fed.job_id, *self._path))

    @property
    def is_guest(self) -> bool:
        return self._party.role == "guest"

    @property
    def party_id(self) -> str:
        return self._party.party_id

    @property
    def sites(self) -> list[SiteAddress]:
        return self._fed.sites

    def _role(self, role: str) -> list[_Party]:
        return [p for p in self._fed.parties if p.role == role]

    def _put(self, receiver: _Party, name: str, value: Any) -> None:
        self._fed._send(self._path, self._party, receiver, name, value)

    def _get(self, sender: _Party, name: str) -> Any:
        return self._fed._receive(self._path, sender, self._party, name)

    def to_arbiter(self, name: str, value: Any) -> None:
        self._put(self._role("arbiter")[0], name, value)

    def from_arbiter(self, name: str) -> Any:
        return self._get(self._role("arbiter")[0], name)

    def to_guest(self, name: str, value: Any) -> None:
        self._put(self._role("guest")[0], name, value)

    def from_guest(self, name: str) -> Any:
        return self._get(self._role("guest")[0], name)

    def to_hosts(self, name: str, value: Any) -> None:
        for host in self._role("host"):
            self._put(host, name, value)

    def from_hosts(self, name: str) -> list[Any]:
        return [self._get(host, name) for host in self._role("host")]

    def to_party(self, rank: int, name: str, value: Any) -> None:
        self._put(self._fed.parties[rank], name, value)

    def from_party(self, rank: int, name: str) -> Any:
        return self._get(self._fed.parties[rank], name)


def run_parties(tasks: Mapping[str, Callable[[], Any]], timeout: float = 120.0) -> dict[str, Any]:
    """Run one callable per party in its own thread; returns label -> its result, or the exception it raised."""
    results: dict[str, Any] = {}

    def run(label: str, task: Callable[[], Any]) -> None:
        try:
            results[label] = task()
        except BaseException as e:  # noqa: BLE001 - the caller asserts on every party's outcome
            results[label] = e

    threads = [threading.Thread(target=run, args=item, name=item[0], daemon=True) for item in tasks.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    if hung:
        raise ChannelTimeout(f"parties still running after {timeout:g} s: {hung}")
    return results
