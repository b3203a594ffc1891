"""Agents and their explained decisions. Never imports Flask."""
