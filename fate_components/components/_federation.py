"""The aggregation schemes on FATE: FATE's own mask-based secure aggregation, the Paillier protocol of
`fate_components.secure_agg` driven through FATE contexts, the factories, and the pre-round checks taking a ctx.

What `_trainer.py` calls here takes FATE contexts; the Paillier protocol and the checks are written against
`secure_agg.channel.Channel`, and `FateChannel` adapts each context handed in.
"""
from __future__ import annotations

import logging

import numpy as np
from fate.arch import Context
from fate.arch.protocol.secure_aggregation import SecureAggregatorClient, SecureAggregatorServer

from fate_components.secure_agg import checks
from fate_components.secure_agg.channel import FederationError
from fate_components.secure_agg.protocol import ExchangeStats, PaillierClient, PaillierOptions, PaillierServer

from ._fate_channel import FateChannel

AGGREGATION_TAGS = ("model", "val_loss")
logger = logging.getLogger(__name__)


def _site_ranks(ctx: Context) -> list[int]:
    return [ctx.guest.rank, *ctx.hosts.ranks]


def _colocated_sites(ctx: Context) -> int:
    """The sites on this machine, where FATE tells: standalone runs every party under this one FATE-Flow."""
    from fate.arch.federation.backends.standalone import StandaloneFederation

    return len(_site_ranks(ctx)) if isinstance(ctx.federation, StandaloneFederation) else 1


class MaskedAggClient:
    """FATE's pairwise-mask secure aggregation (Diffie-Hellman seeded masks cancel in the sum).

    With `plaintext=True` it is FATE's mock mode: updates travel in the clear (debugging only).
    """

    def __init__(self, plaintext: bool = False) -> None:
        self._plaintext = plaintext
        self._clients: dict[str, SecureAggregatorClient] = {}

    def setup(self, ctx: Context) -> "MaskedAggClient":
        for tag in AGGREGATION_TAGS:
            client = SecureAggregatorClient(prefix=f"lung_{tag}", is_mock=self._plaintext)
            client.dh_exchange(ctx.sub_ctx(f"dh_{tag}"), _site_ranks(ctx))
            self._clients[tag] = client
        return self

    def weighted_mean(self, round_ctx: Context, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        # fate_utils' mixer takes float64 arrays of rank >= 0 only.
        as64 = [np.asarray(a, dtype=np.float64) for a in arrays]
        if self._plaintext:
            as64 = [a * weight for a in as64]  # FATE's mock mode divides the sum by the total weight only
        out = self._clients[tag].secure_aggregate(round_ctx.sub_ctx(tag), as64, weight)
        return [np.asarray(o, dtype=np.float32).reshape(a.shape) for o, a in zip(out, arrays)]

    def close(self) -> None:
        pass


class MaskedAggServer:
    """The arbiter's half of FATE's mask-based secure aggregation (it sees the mean)."""

    def __init__(self, ctx: Context, plaintext: bool = False) -> None:
        self._servers = {tag: SecureAggregatorServer(_site_ranks(ctx), prefix=f"lung_{tag}", is_mock=plaintext)
                         for tag in AGGREGATION_TAGS}

    def aggregate(self, round_ctx: Context, tag: str) -> list[np.ndarray] | None:
        return self._servers[tag].secure_aggregate(round_ctx.sub_ctx(tag))


class FatePaillierClient:
    """`PaillierClient` driven with the FATE contexts the round loop hands it."""

    def __init__(self, options: PaillierOptions) -> None:
        self._client = PaillierClient(options)

    @property
    def last(self) -> dict[str, ExchangeStats]:
        return self._client.last

    def setup(self, ctx: Context) -> "FatePaillierClient":
        self._client.setup(FateChannel(ctx), colocated_sites=_colocated_sites(ctx))
        return self

    def weighted_mean(self, round_ctx: Context, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        return self._client.weighted_mean(FateChannel(round_ctx), tag, arrays, weight)

    def close(self) -> None:
        self._client.close()


class FatePaillierServer:
    """`PaillierServer` driven with FATE contexts; receives the public key when built, as the sites finish setup."""

    def __init__(self, ctx: Context, options: PaillierOptions) -> None:
        self._server = PaillierServer.connect(FateChannel(ctx), options)

    def aggregate(self, round_ctx: Context, tag: str) -> None:
        return self._server.aggregate(FateChannel(round_ctx), tag)

    def audit(self) -> dict:
        return self._server.audit()


AGGREGATIONS = ("paillier", "fate_masks", "plaintext")


def make_client(aggregation: str, options: dict) -> FatePaillierClient | MaskedAggClient:
    if aggregation == "paillier":
        return FatePaillierClient(PaillierOptions.from_dict(options.get("paillier")))
    return MaskedAggClient(plaintext=aggregation == "plaintext")


def make_server(aggregation: str, options: dict, ctx: Context) -> FatePaillierServer | MaskedAggServer:
    if aggregation == "paillier":
        return FatePaillierServer(ctx, PaillierOptions.from_dict(options.get("paillier")))
    return MaskedAggServer(ctx, plaintext=aggregation == "plaintext")


def check_aggregation(aggregation: str, allow_plaintext: bool) -> None:
    """Plaintext aggregation shows every site's update to the arbiter: refused unless asked for explicitly."""
    if aggregation not in AGGREGATIONS:
        raise FederationError(f"aggregation {aggregation!r} is not one of {AGGREGATIONS}")
    if aggregation == "plaintext":
        if not allow_plaintext:
            raise FederationError("aggregation 'plaintext' sends every hospital's model update to the coordinator "
                                  "in the clear; it is for debugging only. Set allow_plaintext=true to use it anyway")
        logger.warning("!!! PLAINTEXT AGGREGATION: the coordinator sees every hospital's model update. "
                       "Debugging only; never use with patient data. !!!")


def site_check(ctx: Context, site_name: str, payload: dict) -> None:
    """Send this site's model signature and settings to the arbiter; raise if it reports a mismatch."""
    checks.site_check(FateChannel(ctx), site_name, payload)


def agree_min(ctx: Context, name: str, value: int) -> int:
    """The sites (never the arbiter) agree on the minimum of their `value`s."""
    return checks.agree_min(FateChannel(ctx), name, value)


def arbiter_check(ctx: Context, *, check_torch_version: bool = True) -> None:
    """Compare every site's signature and settings, tell every site the verdict, raise on mismatch."""
    checks.arbiter_check(FateChannel(ctx), check_torch_version=check_torch_version)
