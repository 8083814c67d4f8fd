"""Ingest: HTTP requests → Spec events, normalised, deduplicated and stored (step 1)."""
