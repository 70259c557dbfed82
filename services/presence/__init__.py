"""Presence: which users have a socket open on any gateway, kept in Redis."""
