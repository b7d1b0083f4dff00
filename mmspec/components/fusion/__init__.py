"""Registered fusion components, one family per file."""
