"""``python -m ppgen`` runs the command line (same as the ``ppgen`` script)."""

from ppgen.cli import main

raise SystemExit(main())
