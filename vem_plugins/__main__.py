"""``python -m vem_plugins``: the ``vem-plugins`` command."""
import sys

from vem_plugins.commands.cli import main

sys.exit(main())
