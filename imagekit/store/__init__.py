"""The off-AWS repository: chunks → compress → encrypt → packs, index and manifests on a backend."""
