"""The money side of the platform: passage ingest, tariffs, statements, reconciliation, disputes."""
