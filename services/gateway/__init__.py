"""Gateway: the HTTP API, WebSocket sessions and JWT authentication."""
