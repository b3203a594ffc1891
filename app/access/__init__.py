"""Access control: API keys, signed tokens, roles, rate limits, WebSocket slots and the audit
trail. Nothing here imports Flask; app/api/access.py applies it to requests."""
