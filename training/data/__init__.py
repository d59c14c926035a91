"""Readers and ``prepare`` converters, one module per dataset."""
