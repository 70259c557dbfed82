"""The peer a Python team would otherwise pick, for side-by-side benchmarks:
python-socketio with its Redis manager, and one PostgreSQL insert per send."""
