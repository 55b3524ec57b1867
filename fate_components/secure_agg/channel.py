"""The transport the secure-aggregation protocol is written against: exactly what it needs of a federation.

A message is addressed by (tag path, sender, receiver, name). `sub(tag)` gives the channel one tag
deeper (FATE's `sub_ctx`); the protocol opens one per exchange. Parties: one guest, its hosts (the
sites, which train) and one arbiter (no data, no secret key). Implementations:
`fate_components.components._fate_channel.FateChannel` wraps a FATE `Context`;
`memory_channel.MemoryChannel` runs a whole federation in one process, for unit tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fate_components.core.errors import LungError

__all__ = ["Channel", "FederationError", "SiteAddress", "own_site_index"]


class FederationError(LungError):
    """A federation-level failure: parties disagree, a party is missing, or a check failed."""


@dataclass(frozen=True)
class SiteAddress:
    """A training site (the guest or a host) as the protocol addresses and names it."""

    rank: int        # the party's rank in the federation (what `Channel.to_party` takes)
    role: str        # "guest" or "host"
    party_id: str

    @property
    def label(self) -> str:
        """How messages name the site: ``guest 9999``, ``host 10000``."""
        return f"{self.role} {self.party_id}"


class Channel(Protocol):
    """One party's view of the federation under one tag path."""

    def sub(self, tag: str) -> "Channel":
        """The channel one tag deeper: messages under it never meet messages under another tag."""
        ...

    @property
    def exchange_id(self) -> str:
        """This tag path within this job, the same at every party and unique to the path (it binds the masks)."""
        ...

    @property
    def is_guest(self) -> bool:
        """Whether this party is the guest (the site that deals keys and relays decrypted shards)."""
        ...

    @property
    def party_id(self) -> str:
        """This party's id."""
        ...

    @property
    def sites(self) -> list[SiteAddress]:
        """Every site: the guest first, then the hosts in host order (the order `from_hosts` returns)."""
        ...

    def to_arbiter(self, name: str, value: Any) -> None: ...

    def from_arbiter(self, name: str) -> Any: ...

    def to_guest(self, name: str, value: Any) -> None: ...

    def from_guest(self, name: str) -> Any: ...

    def to_hosts(self, name: str, value: Any) -> None:
        """One message to every host."""
        ...

    def from_hosts(self, name: str) -> list[Any]:
        """One message from every host, in host order."""
        ...

    def to_party(self, rank: int, name: str, value: Any) -> None:
        """To one party by rank (the arbiter's reply to each site, the guest's key dealing to each host)."""
        ...

    def from_party(self, rank: int, name: str) -> Any: ...


def own_site_index(channel: Channel) -> int:
    """This party's position in `channel.sites` (the guest is 0); LungError for a party that is not a site."""
    if channel.is_guest:
        return 0
    for i, site in enumerate(channel.sites):
        if site.role == "host" and site.party_id == channel.party_id:
            return i
    raise LungError(f"Secure aggregation failed: party {channel.party_id} is not among the sites "
                    f"{[s.label for s in channel.sites]}")
