"""crossdock.testing: the kit for plugin authors (fake vendors, harness, conformance suite)."""
