"""Shared, tested building blocks: schedules, samplers, guidance, networks, EMA."""
