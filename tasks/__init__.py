"""Task registry, data sources and forges."""
