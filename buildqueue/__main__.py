"""python -m buildqueue: the `buildqueue` command."""

from buildqueue.cli import main

raise SystemExit(main())
