"""OpenStack target (and its Rackspace profile): Glance image → Nova server."""
