"""Stage 1: the spec language. Pure pydantic and PyYAML; never imports torch."""
