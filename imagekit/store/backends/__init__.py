"""Store backends: one contract, implemented on Apache Libcloud storage drivers, chosen by URL."""
