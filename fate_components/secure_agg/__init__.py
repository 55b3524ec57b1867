"""Paillier secure aggregation on FATE's built-in Paillier (`fate.arch.protocol.phe.paillier`).

`protocol` (the sites' and the arbiter's halves) and `checks` (the pre-round check) are written
against `channel.Channel`; `memory_channel` runs them in one process for tests. Kept light on
purpose: worker processes import `_obfuscation_worker` from here.
"""
