"""`python -m seqlit.cli ...` is `seqlit ...`."""

from seqlit.cli.main import main

main()
