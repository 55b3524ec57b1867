"""A wiretap for the end-to-end tests, imported into every process of the test's FATE-Flow.

The test server's generated sitecustomize imports the modules named in FATE_LUNG_SITE_HOOKS.
With FATE_LUNG_WIRE_TAP set to a directory, this one records there:
  wire/     every message any party pushes into FATE's standalone federation, as bytes, with
            sender, receivers, name and tag (large messages, which FATE splits into a table,
            are recorded reassembled);
  secrets/  each Paillier key pair a guest generates (so a test can search the wire for it);
  updates/  each site's plaintext update as it enters the aggregator.
It is a spy, not a mock: every call goes through to the real code unchanged. One test-only switch:
while a file named `masking_off` exists in the tap directory, the sites send their Paillier
plaintexts unmasked (the positive control of the collusion test); there is no such option for users.
"""
import importlib.abc
import itertools
import os
import pickle
import sys

TAP = os.environ.get("FATE_LUNG_WIRE_TAP")
_seq = itertools.count()


def _record(kind: str, record: dict) -> None:
    directory = os.path.join(TAP, kind)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{os.getpid()}-{next(_seq):06d}.pkl")
    with open(path + ".tmp", "wb") as f:
        pickle.dump({"pid": os.getpid(), **record}, f)
    os.replace(path + ".tmp", path)


def _tap_federation(module) -> None:
    cls = module.StandaloneFederation
    push_bytes, push_table = cls._push_bytes, cls._push_table

    def _push_bytes(self, v, name, tag, parties):
        _record("wire", {"session": self.session_id, "src": tuple(self.local_party),
                         "dst": [tuple(p) for p in parties], "name": name, "tag": tag, "data": bytes(v)})
        return push_bytes(self, v, name, tag, parties)

    def _push_table(self, table, name, tag, parties):
        slices = sorted(table.collect(), key=lambda kv: kv[0])
        data = b"".join(v if isinstance(v, (bytes, bytearray)) else pickle.dumps(v) for _, v in slices)
        _record("wire", {"session": self.session_id, "src": tuple(self.local_party),
                         "dst": [tuple(p) for p in parties], "name": name, "tag": tag, "data": data})
        return push_table(self, table, name, tag, parties)

    cls._push_bytes, cls._push_table = _push_bytes, _push_table


def _tap_keygen(module) -> None:
    generate = module.generate_keypair

    def generate_keypair(*args, **kwargs):
        public, secret = generate(*args, **kwargs)
        _record("secrets", {"n": public.n, "p": secret.p, "q": secret.q, "sk_bytes": secret.to_bytes()})
        return public, secret

    module.generate_keypair = generate_keypair


def _tap_client(class_name: str):
    def patch(module) -> None:
        cls = getattr(module, class_name)
        weighted_mean = cls.weighted_mean

        def spy(self, round_ctx, tag, arrays, weight):
            _record("updates", {"client": class_name, "tag": tag, "weight": weight,
                                "arrays": [a.copy() for a in arrays]})
            return weighted_mean(self, round_ctx, tag, arrays, weight)

        cls.weighted_mean = spy
    return patch


MASKING_OFF = "masking_off"


def _tap_masking(module) -> None:
    cls = module.PairwiseMasks
    apply = cls.apply

    def apply_unless_switched_off(self, plaintexts, exchange_id, name):
        if os.path.exists(os.path.join(TAP, MASKING_OFF)):
            return list(plaintexts)
        return apply(self, plaintexts, exchange_id, name)

    cls.apply = apply_unless_switched_off


_PATCHES = {
    "fate_components.secure_agg.masking": _tap_masking,
    "fate.arch.federation.backends.standalone._federation": _tap_federation,
    "fate_components.secure_agg.keys": _tap_keygen,
    "fate_components.secure_agg.protocol": _tap_client("PaillierClient"),
    "fate_components.components._federation": _tap_client("MaskedAggClient"),
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds a module through the other finders, then patches it right after it executes."""

    def find_spec(self, name, path, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if TAP:
    sys.meta_path.insert(0, _PatchAfterImport())
