"""flexfleet: pure domain logic for aggregating EVs into a virtual power plant (no I/O here)."""
