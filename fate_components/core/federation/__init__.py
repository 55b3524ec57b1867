"""The federated round loop, written against an aggregation interface; knows nothing of FATE."""
