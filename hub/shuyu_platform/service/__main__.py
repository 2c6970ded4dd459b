"""Entry point the hub runs: ``python -m shuyu_platform.service``."""

from .app import main

main()
