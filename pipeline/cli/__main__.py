"""``python -m pipeline.cli``: how ``genguard up`` starts its background processes."""

from pipeline.cli.main import main

main()
