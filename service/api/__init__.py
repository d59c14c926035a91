"""Thin HTTP adapters over the repository and task adapters."""
