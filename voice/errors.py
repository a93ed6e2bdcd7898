"""Errors shared across the package (kept here so no module imports a heavier one just for a type)."""

from __future__ import annotations


class ConfigError(ValueError):
    """Settings that cannot work; the message says which key and why."""
