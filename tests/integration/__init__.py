"""Integration ring: the stack's services started natively from the repository's own files."""
