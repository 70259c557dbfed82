"""Ingest: validates sends and creations, and publishes the accepted events."""
