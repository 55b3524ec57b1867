"""Operator tooling around FATE-Flow: server lifecycle, job compilation and submission."""
