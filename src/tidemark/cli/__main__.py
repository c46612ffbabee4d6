"""``python -m tidemark.cli``: the same as the ``tidemark`` command."""

from tidemark.cli import main

main()
