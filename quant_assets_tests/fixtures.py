"""Shared test fixtures for market data (simulated landing zones, Dagster instances)."""
