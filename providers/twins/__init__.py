"""Twins: local QEMU boots presenting one cloud\x27s guest environment (see provider.py)."""
