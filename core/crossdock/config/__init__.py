"""Configuration: ``crossdock.toml`` read, expanded, structured, validated and bound."""
