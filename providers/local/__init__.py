"""The local provider: QEMU on this machine, for rehearsals and tests."""
