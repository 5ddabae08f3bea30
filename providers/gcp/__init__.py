"""GCP target: disk.raw tar.gz → Cloud Storage → image → Compute Engine instance."""
