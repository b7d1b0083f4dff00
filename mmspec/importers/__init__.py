"""Specs written from other frameworks' model configurations (`mmspec import`)."""
