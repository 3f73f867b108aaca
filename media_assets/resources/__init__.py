"""Dagster resources: configuration and clients that call the kernels."""
