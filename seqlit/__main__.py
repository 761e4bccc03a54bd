"""`python -m seqlit ...` is `seqlit ...` (useful without the console script on PATH, or from a checkout)."""

from seqlit.cli.main import main

main()
