"""Registered heads components, one family per file."""
