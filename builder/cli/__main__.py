"""`python -m builder.cli …` is `aib …`."""

from builder.cli.main import main

main()
