"""Registered encoders components, one family per file."""
