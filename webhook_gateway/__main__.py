"""Run the command line as `python -m webhook_gateway`."""

from webhook_gateway.cli import main

raise SystemExit(main())
