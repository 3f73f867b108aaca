"""Dagster definitions, one folder per pipeline; orchestration only."""
