"""Target providers: where a stored image is booted (local QEMU, clouds)."""
