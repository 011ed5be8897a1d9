"""`atomchat serve | migrate | seed`: the only module that knows about argv.

A failure an operator can fix (a port in use, a database that is not there
or not migrated, a missing secret) is one line on stderr naming the cause
and the fix, and a non-zero exit; `--log-level DEBUG` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from atomchat_server.config import ConfigError, Settings

log = logging.getLogger("atomchat")

EXIT_FAILURE = 1
EXIT_CONFIG = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

SERVE_ENVIRONMENT = """\
environment (flags win over it):
  DATABASE_URL                postgresql://user:password@host:port/db; without it an
                              embedded PostgreSQL runs in the data folder
  ATOMCHAT_HOST, ATOMCHAT_GRPC_PORT, ATOMCHAT_HTTP_PORT, ATOMCHAT_METRICS_PORT,
  ATOMCHAT_DATA_DIR, ATOMCHAT_PORT_FILE, ATOMCHAT_REPLICAS
                              as the flags above
  ATOMCHAT_REPLICA_RESTART_SECONDS
                              first wait before a replica that exited is started
                              again (1; doubles while it keeps exiting, up to 30)
  ATOMCHAT_JWT_SECRET         token signing key; without it a local run makes one in
                              the data folder, and a non-loopback --host refuses to start
  ATOMCHAT_ENV=production     requires ATOMCHAT_JWT_SECRET of 32+ characters
  ATOMCHAT_TOKEN_MINUTES      token lifetime (20)
  ATOMCHAT_DATABASE_WAIT_SECONDS
                              how long to wait for PostgreSQL at start (30)
  ATOMCHAT_LOG_LEVEL, ATOMCHAT_LOG_FORMAT
                              as --log-level and --log-format
  ...and the limits and tuning knobs listed in the README's Configuration section.
"""


def _add_logging_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--log-level and --log-format, accepted before and after the command."""
    default_level = os.environ.get("ATOMCHAT_LOG_LEVEL") or "INFO"
    default_format = os.environ.get("ATOMCHAT_LOG_FORMAT") or "text"
    parser.add_argument(
        "--log-level",
        default=default_level if top else argparse.SUPPRESS,
        help="DEBUG, INFO (default), WARNING or ERROR (ATOMCHAT_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=default_format if top else argparse.SUPPRESS,
        help="text (default) or json: one JSON object per line (ATOMCHAT_LOG_FORMAT)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atomchat", description="AtomChat: real-time channel chat over gRPC"
    )
    _add_logging_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the service (and Envoy, and a database)",
        description="Run the gRPC service, Envoy in front of it (unless --no-envoy) and, "
        "without DATABASE_URL, an embedded PostgreSQL (migrated and seeded with the demo "
        "data when new).",
        epilog=SERVE_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to listen on (ATOMCHAT_HOST, default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (ATOMCHAT_GRPC_PORT, 50051)")
    serve.add_argument("--http-port", type=int, help="Envoy's HTTP port (ATOMCHAT_HTTP_PORT, 8080)")
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on http://HOST:PORT/metrics (ATOMCHAT_METRICS_PORT; off)",
    )
    serve.add_argument("--data-dir", type=Path, help="embedded database folder (ATOMCHAT_DATA_DIR)")
    serve.add_argument(
        "--replicas",
        type=int,
        help="gRPC server processes behind Envoy, on --grpc-port and the ports after it "
        "(ATOMCHAT_REPLICAS, 1)",
    )
    serve.add_argument(
        "--no-envoy", dest="envoy", action="store_false", default=None, help="gRPC only"
    )
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade DATABASE_URL's schema before serving (the embedded database always is)",
    )
    serve.add_argument(
        "--port-file",
        type=Path,
        default=os.environ.get("ATOMCHAT_PORT_FILE") or None,
        help='once ready, write {"grpc": PORT, "http": PORT, "pid": PID} there as JSON,'
        " removed on exit (ATOMCHAT_PORT_FILE)",
    )
    _add_logging_options(serve, top=False)
    for name, text in (("migrate", "upgrade the database schema"), ("seed", "insert demo data")):
        sub = commands.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}.")
        sub.add_argument("--data-dir", type=Path, help="embedded database folder")
        _add_logging_options(sub, top=False)
    return parser


@contextlib.asynccontextmanager
async def _database_url(settings: Settings) -> AsyncIterator[str]:
    """DATABASE_URL once it answers, or the data folder's embedded PostgreSQL, used (and
    started, unless another atomchat runs it) for as long as this block."""
    from atomchat_server.db.waiting import wait_for_database

    if settings.database_url is not None:
        await wait_for_database(settings.database_url, seconds=settings.database_wait_seconds)
        yield settings.database_url
        return
    from atomchat_server.db.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir)
    url = await asyncio.to_thread(embedded.start)
    if embedded.started_here:
        log.info("embedded PostgreSQL in %s on port %d", embedded.pgdata, embedded.port)
    try:
        yield url
    finally:
        if await asyncio.to_thread(embedded.stop):
            log.info("embedded PostgreSQL stopped")


async def _migrate(settings: Settings) -> int:
    from atomchat_server.db.migrate import upgrade

    async with _database_url(settings) as url:
        await upgrade(url)
    log.info("database schema is up to date")
    return 0


async def _seed(settings: Settings) -> int:
    from atomchat_server.db.engine import Database
    from atomchat_server.db.migrate import check_schema
    from atomchat_server.seeding import seed

    async with _database_url(settings) as url:
        await check_schema(url)
        database = Database(url)
        try:
            result = await seed(database)
        finally:
            await database.dispose()
    log.info("%s", result.describe())
    return 0


def write_port_file(path: Path, ports: dict[str, Any]) -> None:
    """Write `ports` to `path` as JSON at once: a reader sees the whole file or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(ports) + "\n")
    temporary.replace(path)


async def _until_stopped(work: Awaitable[int], stop: asyncio.Event, ready: asyncio.Event) -> int:
    """Run `work`. A stop signal before it is `ready` cancels it (its cleanup still
    runs); after, `work` sees `stop` itself and shuts down in order."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done() and not ready.is_set():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 0
    return await task


async def _serve(settings: Settings, options: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    ready = asyncio.Event()
    return await _until_stopped(_serve_until(settings, options, stop, ready), stop, ready)


def _preload() -> None:
    """Import what serving needs (about a second of CPU) while PostgreSQL starts."""
    import atomchat_server.app
    import atomchat_server.db.migrate
    import atomchat_server.seeding  # noqa: F401


async def _serve_until(
    settings: Settings, options: argparse.Namespace, stop: asyncio.Event, ready: asyncio.Event
) -> int:
    from atomchat_server.ports import ensure_free
    from atomchat_server.signing_key import with_signing_key

    settings = await asyncio.to_thread(with_signing_key, settings)
    # Taken ports are found before anything starts.
    ensure_free(settings.host, settings.grpc_port, "gRPC")
    if settings.envoy:
        ensure_free(settings.host, settings.http_port, "HTTP")

    preloading = asyncio.ensure_future(asyncio.to_thread(_preload))
    async with _database_url(settings) as url:
        await preloading
        await _prepare_database(settings, url, migrate=options.migrate)
        serving = _serve_here if settings.replicas == 1 else _serve_replicas
        await serving(settings, url, options, stop, ready)
    return 0


async def _serve_here(
    settings: Settings,
    url: str,
    options: argparse.Namespace,
    stop: asyncio.Event,
    ready: asyncio.Event,
) -> None:
    """One gRPC server in this process, and Envoy in front of it."""
    from atomchat_server.app import App

    port_file: Path | None = options.port_file
    app = App(settings, url)
    envoy: Any = None
    try:
        port = app.bind()
        envoy = _envoy(settings, [port]) if settings.envoy else None
        # Envoy starts while the server connects to the database and spawns its workers.
        async with asyncio.TaskGroup() as starting:
            starting.create_task(app.start())
            started_envoy = starting.create_task(envoy.start()) if envoy else None
        _settle_garbage_collector()
        ports: dict[str, Any] = {"grpc": port}
        print(f"gRPC      {settings.host}:{port}", flush=True)
        if app.metrics_port is not None:
            ports["metrics"] = app.metrics_port
            print(f"metrics   http://{settings.host}:{app.metrics_port}/metrics", flush=True)
        if started_envoy is not None:
            ports["http"] = started_envoy.result()
            _print_http(settings, ports["http"])
        await _ready_until_stopped(ports, port_file, ready, stop)
    finally:
        if port_file is not None:
            await asyncio.to_thread(port_file.unlink, missing_ok=True)
        # The server first, so that its streams end with a status that
        # reaches clients through Envoy; then Envoy.
        try:
            await app.stop()
        finally:
            if envoy is not None:
                await envoy.stop()


async def _serve_replicas(
    settings: Settings,
    url: str,
    options: argparse.Namespace,
    stop: asyncio.Event,
    ready: asyncio.Event,
) -> None:
    """`settings.replicas` gRPC servers as child processes (atomchat_server/replicas.py),
    and Envoy in front of them all."""
    from atomchat_server.replicas import Replicas

    port_file: Path | None = options.port_file
    ports: dict[str, Any] = {}

    async def replica_restarted() -> None:
        if port_file is not None and ports:
            ports["replicas"] = replicas.describe()
            await asyncio.to_thread(write_port_file, port_file, ports)

    replicas = Replicas(
        settings,
        url,
        log_level=options.log_level,
        log_format=options.log_format,
        on_restart=replica_restarted,
    )
    envoy: Any = None
    try:
        await replicas.start()
        envoy = _envoy(settings, replicas.grpc_ports) if settings.envoy else None
        http_port = await envoy.start() if envoy is not None else None
        for replica in replicas.replicas:
            print(
                f"gRPC      {settings.host}:{replica.grpc_port}  "
                f"(replica {replica.index + 1}, pid {replica.pid})",
                flush=True,
            )
            if replica.metrics_port is not None:
                print(
                    f"metrics   http://{settings.host}:{replica.metrics_port}/metrics  "
                    f"(replica {replica.index + 1})",
                    flush=True,
                )
        ports["grpc"] = replicas.grpc_ports[0]
        if http_port is not None:
            ports["http"] = http_port
            _print_http(settings, http_port)
        ports["replicas"] = replicas.describe()
        await _ready_until_stopped(ports, port_file, ready, stop)
    finally:
        if port_file is not None:
            await asyncio.to_thread(port_file.unlink, missing_ok=True)
        try:
            await replicas.stop()
        finally:
            if envoy is not None:
                await envoy.stop()


async def _ready_until_stopped(
    ports: dict[str, Any], port_file: Path | None, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    """Say so, write the port file (the caller removes it), and wait to be stopped."""
    print("AtomChat is ready; Ctrl-C stops it", flush=True)
    ready.set()
    if port_file is not None:
        ports["pid"] = os.getpid()
        await asyncio.to_thread(write_port_file, port_file, ports)
    await stop.wait()
    log.info("shutting down")


def _print_http(settings: Settings, http_port: int) -> None:
    print(
        f"HTTP      http://{settings.host}:{http_port}  (JSON, grpc-web, web client)",
        flush=True,
    )


async def _prepare_database(settings: Settings, url: str, *, migrate: bool) -> None:
    """The embedded database is migrated and seeded; DATABASE_URL's only with --migrate."""
    from atomchat_server.db.engine import Database
    from atomchat_server.db.migrate import upgrade
    from atomchat_server.seeding import seed

    if settings.database_url is None or migrate:
        await upgrade(url)
    if settings.database_url is None:
        seeder = Database(url)
        try:
            log.info("%s", (await seed(seeder)).describe())
        finally:
            await seeder.dispose()


def _envoy(settings: Settings, grpc_ports: Sequence[int]) -> Any:
    from atomchat_server.edge.config import unary_timeout
    from atomchat_server.edge.envoy import Envoy

    return Envoy(
        listen_host=settings.host,
        http_port=settings.http_port,
        grpc_ports=grpc_ports,
        work_dir=settings.data_dir,
        unary_timeout=unary_timeout(settings.database_timeout),
    )


def _settle_garbage_collector() -> None:
    """Tune the cyclic garbage collector for a long-running chat server.

    What exists once the server is up (modules, descriptors, the schema) lives
    as long as the process: freeze it out of the collector's view. Live chat
    allocates and frees many short-lived objects per message copy, almost
    none of them in cycles; collecting the youngest generation every 50,000
    allocations instead of every 700 took the collector from about 7% of the
    server's CPU to under 1% at 500 subscribers.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    # The children this process starts (Envoy, PostgreSQL) exec at once and
    # never use gRPC: gRPC's fork handlers have nothing to do, and only warn.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    options = _parser().parse_args(argv)
    # Imported only now: gRPC reads GRPC_ENABLE_FORK_SUPPORT when it is first imported.
    from atomchat_server.observability import logs

    try:
        logs.configure(options.log_level, options.log_format)
    except ValueError:
        print(f"atomchat: unknown log level {options.log_level!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        settings = Settings.from_environment(
            host=getattr(options, "host", None),
            grpc_port=getattr(options, "grpc_port", None),
            http_port=getattr(options, "http_port", None),
            metrics_port=getattr(options, "metrics_port", None),
            data_dir=options.data_dir,
            envoy=getattr(options, "envoy", None),
            replicas=getattr(options, "replicas", None),
        )
    except ConfigError as exc:
        print(f"atomchat: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    command: Callable[[], Awaitable[int]]
    if options.command == "serve":
        command = lambda: _serve(settings, options)  # noqa: E731
    else:
        chosen = {"migrate": _migrate, "seed": _seed}[options.command]
        command = lambda: chosen(settings)  # noqa: E731
    try:
        return _run(command())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from atomchat_server.diagnosis import explain

        sentence = explain(exc)
        if sentence is None:
            raise
        log.debug("the failure in full", exc_info=True)
        print(f"atomchat: {sentence}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILURE


def _run(main_coroutine: Awaitable[int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_coroutine)  # type: ignore[arg-type]
    return uvloop.run(main_coroutine)  # type: ignore[arg-type]
