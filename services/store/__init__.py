"""Store: the PostgreSQL read model, projected from the streams, and its queries."""
