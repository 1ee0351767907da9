"""``python -m radostdb.bench``: the radostdb-bench command."""

from .cli import main

main()
