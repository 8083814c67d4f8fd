"""The ``crossdock`` command line: run, check, plugins, test, dlq, backfill, init."""
