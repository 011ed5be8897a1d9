"""`python -m atomchat_server` is the `atomchat` command (how `serve` starts its replicas)."""

from atomchat_server.cli import main

raise SystemExit(main())
