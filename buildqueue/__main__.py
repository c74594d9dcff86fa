"""python -m buildqueue: same as the `buildqueue` command."""

from buildqueue.cli import main

raise SystemExit(main())
