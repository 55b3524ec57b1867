"""Framework-free core: reading CT scans and candidates, cutting patches, synthetic sites.

Nothing in this package imports FATE, so it can be used and tested on its own.
"""
