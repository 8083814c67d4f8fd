"""``python -m crossdock`` is the ``crossdock`` command."""

from crossdock.cli.main import main

raise SystemExit(main())
