"""`python -m personagraph.cli ...` is the `personagraph` command."""

from personagraph.cli.main import main

raise SystemExit(main())
