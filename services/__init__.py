"""Thin shells around flexfleet: Kafka, database, HTTP, files."""
