"""Fanout: delivers each accepted message to every member's delivery subject."""
