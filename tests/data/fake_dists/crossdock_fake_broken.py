"""A test plugin that fails to import."""

raise ImportError("crossdock_fake_broken needs a module that is not installed")
