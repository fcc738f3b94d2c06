"""``python -m aisuper_cli``: the same as the ``aisuper`` command."""

from aisuper_cli.main import app

app(prog_name="aisuper")
