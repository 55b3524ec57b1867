"""Paillier secure aggregation on FATE's built-in Paillier (`fate.arch.protocol.phe.paillier`).

Kept light on purpose: worker processes import `_obfuscation_worker` from here.
"""
