"""``python -m maskgen`` is the ``maskgen`` command."""
from maskgen.cli import main

main()
