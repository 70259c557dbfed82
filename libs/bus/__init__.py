"""NATS and JetStream plumbing shared by every service."""
