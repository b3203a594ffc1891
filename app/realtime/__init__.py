"""Live events: the per-process LISTEN/NOTIFY listener and the WebSocket hub."""
