"""``python -m thunderpush``: the same as the ``thunderpush`` command."""

from thunderpush.server.cli import main

main()
