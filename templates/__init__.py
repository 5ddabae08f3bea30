"""Templates shipped as package data: cloud-init user-data, example plans."""
