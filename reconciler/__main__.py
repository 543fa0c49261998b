"""`python -m reconciler` is the same as the `authpolicy` command."""

from reconciler.cli import main

raise SystemExit(main())
