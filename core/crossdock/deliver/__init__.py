"""Deliver: batches to vendors with pacing, retries, dead letters and backfill (step 4)."""
