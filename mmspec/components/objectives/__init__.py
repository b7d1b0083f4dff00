"""Registered objectives components, one family per file."""
