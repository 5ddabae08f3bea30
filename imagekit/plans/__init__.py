"""The three jobs: periodic export, failover, rehearsal — driven by a plan file."""
