"""Helpers several tests share (fixtures live in conftest.py and use these)."""
