"""Helpers shared by every test ring: real processes started, awaited and stopped."""
