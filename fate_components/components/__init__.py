"""Thin FATE adapters: declare roles, stages, parameters and artifacts; call the core.

Registered through the `fate.ext.component_desc` entry-point group (see pyproject.toml).
"""
