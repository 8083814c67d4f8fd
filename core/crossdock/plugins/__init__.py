"""Plugins: the hook specifications, discovery through entry points, and the registry."""
