"""A test plugin whose entry-point name clashes with crossdock-fake-good."""
