"""Transform: events → vendor payloads with JMESPath mappings compiled once (step 3)."""
