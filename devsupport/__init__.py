"""What tests/ and bench/ need around the server, in one place; not installed with it.

- databases: scratch databases on a PostgreSQL server (URLs, create, drop, one per block);
- processes: the `atomchat` CLI, grpcurl and other tools run for a result;
- servers: `atomchat serve` (or any server that writes a port file) as a child process.

Both run from the repository's root, where this package is importable.
"""

from devsupport.databases import (
    admin_dsn,
    create_database,
    database_name,
    drop_database,
    fresh_database,
)
from devsupport.processes import (
    Completed,
    child_environment,
    run,
    run_atomchat,
    run_grpcurl,
    tool,
)
from devsupport.servers import NO_LIMITS, Server, ServerError, running, serve_atomchat

__all__ = [
    "NO_LIMITS",
    "Completed",
    "Server",
    "ServerError",
    "admin_dsn",
    "child_environment",
    "create_database",
    "database_name",
    "drop_database",
    "fresh_database",
    "run",
    "run_atomchat",
    "run_grpcurl",
    "running",
    "serve_atomchat",
    "tool",
]
