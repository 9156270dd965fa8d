"""``python -m nstcourse.cli``: the same as the ``nstcourse`` command."""

from nstcourse.cli import main

raise SystemExit(main())
