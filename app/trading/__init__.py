"""Paper exchange domain: sessions, orders, fills, positions, prices. Never imports Flask."""
