"""A FATE `Context` as the `Channel` that the secure-aggregation protocol is written against.

Each method is one FATE call on the same namespace (`ctx.sub_ctx` for `sub`), so the messages on
FATE's wire (names, tags, receivers) are what the protocol would send through the context itself.
"""
from __future__ import annotations

from typing import Any

from fate.arch import Context

from fate_components.secure_agg.channel import SiteAddress


class FateChannel:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def sub(self, tag: str) -> "FateChannel":
        return FateChannel(self.ctx.sub_ctx(tag))

    @property
    def exchange_id(self) -> str:
        # FATE's federation session (one per job and task, the same at every party) and the namespace's
        # tag, which FATE itself uses to keep the messages of different sub-contexts apart.
        return f"{self.ctx.federation.session_id}/{self.ctx.namespace.federation_tag}"

    @property
    def is_guest(self) -> bool:
        return self.ctx.is_on_guest

    @property
    def party_id(self) -> str:
        return self.ctx.local.party[1]

    @property
    def sites(self) -> list[SiteAddress]:
        guest = self.ctx.guest
        hosts = [SiteAddress(h.rank, "host", h.party[1]) for h in self.ctx.hosts]
        return [SiteAddress(guest.rank, "guest", guest.party[1]), *hosts]

    def to_arbiter(self, name: str, value: Any) -> None:
        self.ctx.arbiter.put(name, value)

    def from_arbiter(self, name: str) -> Any:
        return self.ctx.arbiter.get(name)

    def to_guest(self, name: str, value: Any) -> None:
        self.ctx.guest.put(name, value)

    def from_guest(self, name: str) -> Any:
        return self.ctx.guest.get(name)

    def to_hosts(self, name: str, value: Any) -> None:
        self.ctx.hosts.put(name, value)   # one push to every host, as FATE's own protocols do

    def from_hosts(self, name: str) -> list[Any]:
        return self.ctx.hosts.get(name)

    def to_party(self, rank: int, name: str, value: Any) -> None:
        self.ctx.parties[rank].put(name, value)

    def from_party(self, rank: int, name: str) -> Any:
        return self.ctx.parties[rank].get(name)
