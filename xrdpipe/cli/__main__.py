"""``python -m xrdpipe.cli``: the ``xrdpipe`` command line."""

from xrdpipe.cli import main

main()
