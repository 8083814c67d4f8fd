"""The built-in sources: the Segment tracking API, Segment's webhooks, generic JSON webhooks."""
