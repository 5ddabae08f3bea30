"""The local bench: AWS and Azure emulators on loopback and the bootable test disk."""
