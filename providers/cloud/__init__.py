"""Shared pieces of the cloud providers (gcp, azure, openstack): settings, secrets, names."""
