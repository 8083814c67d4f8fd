"""The built-in destinations: ``segment``, ``webhook`` and ``file``."""
