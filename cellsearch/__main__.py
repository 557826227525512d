"""``python -m cellsearch ...``: the ``cellsearch`` command line."""

from cellsearch.app.cli import main

raise SystemExit(main())
