"""`python -m bench`: the whole benchmark, or the parts chosen by options."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from bench import charts, report
from bench.database import BenchDatabase, server_url
from bench.scenarios import FEATURED, SCENARIOS
from bench.suite import Options, Suite
from devsupport import fresh_database

RESULTS = Path(__file__).parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="AtomChat fan-out, latency, logins, memory, profile"
    )
    parser.add_argument("--quick", action="store_true", help="short runs, no profile")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--modes", default="0,64", help="max_batch values to run (default 0,64)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (3; quick 1)")
    parser.add_argument("--duration", type=float, help="seconds measured (10; quick 3)")
    parser.add_argument(
        "--window-copies",
        type=int,
        default=65536,
        help="copies in flight over all streams; each channel gets its share (65536)",
    )
    parser.add_argument(
        "--max-window", type=int, default=2048, help="at most this many messages per channel (2048)"
    )
    parser.add_argument("--ack-window", type=int, default=64, help="unacked sends per sender (64)")
    parser.add_argument("--payload", type=int, default=100, help="message length in chars (100)")
    parser.add_argument(
        "--streams-per-connection", type=int, default=50, help="streams per HTTP/2 connection (50)"
    )
    parser.add_argument(
        "--message-rate",
        type=float,
        default=100_000.0,
        help="the server's send limit per user and channel, messages/s (100000)",
    )
    parser.add_argument("--message-burst", type=int, default=10_000, help="and its burst (10000)")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the ceiling")
    parser.add_argument(
        "--attempts", type=int, default=3, help="measure a disturbed run again, up to (3) in all"
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=15.0,
        help="other jobs' CPU above which a run counts as disturbed (15%%)",
    )
    parser.add_argument(
        "--quiet-cpu",
        type=float,
        default=30.0,
        help="start a run once the machine's CPU is below this (30%%; waits at most 2 min)",
    )
    parser.add_argument(
        "--logins", type=int, default=20, help="login storm clients beside s500 (20; 0 skips)"
    )
    parser.add_argument(
        "--timeline-share",
        type=float,
        default=0.0,
        help="also run AtomChat flat and paced with this share of every sender's events"
        " edits and reactions (0.1 = 10%%; 0 skips)",
    )
    parser.add_argument(
        "--bar-copies",
        type=float,
        default=52000,
        help="the s500 bar in copies/s; a run paced at half of it checks latency (0 skips)",
    )
    parser.add_argument(
        "--memory-streams", type=int, default=1000, help="streams for the RSS figure (0 skips)"
    )
    parser.add_argument("--memory-rounds", type=int, help="open/close rounds (3; quick 1)")
    parser.add_argument(
        "--burst-streams", type=int, default=2000, help="streams opened at once (2000; 0 skips)"
    )
    parser.add_argument(
        "--burst-rounds", type=int, help="bursts, each after a quiet window (3; quick 1)"
    )
    parser.add_argument(
        "--probe-rate", type=float, default=20.0, help="GetMe calls per second beside a burst (20)"
    )
    parser.add_argument(
        "--quiet-seconds", type=float, default=10.0, help="probe window before each burst (10 s)"
    )
    parser.add_argument(
        "--idle-streams",
        type=int,
        help="idle streams held with heartbeats (10000; quick 2000; 0 skips)",
    )
    parser.add_argument(
        "--idle-heartbeat", type=float, default=2.0, help="the idle server's heartbeat (2 s)"
    )
    soak = parser.add_argument_group("soak (--soak runs it alone)")
    soak.add_argument(
        "--soak", action="store_true", help="chat at half the maximum for a long time, nothing else"
    )
    soak.add_argument("--soak-minutes", type=float, default=30.0, help="how long (30 min)")
    soak.add_argument("--soak-interval", type=float, default=60.0, help="report every (60 s)")
    soak.add_argument(
        "--soak-scenario", default="s100", choices=list(SCENARIOS), help="the shape (s100)"
    )
    soak.add_argument("--soak-mode", type=int, default=0, help="max_batch (0)")
    soak.add_argument(
        "--soak-rate",
        type=float,
        help="messages/s per channel (default: half of a flat-out run measured first)",
    )
    parser.add_argument(
        "--profile-seconds", type=float, help="py-spy under s500 flat out (20; quick 0 = skip)"
    )
    parser.add_argument(
        "--profile-scenario",
        default=FEATURED,
        choices=list(SCENARIOS),
        help=f"the scenario profiled flat out ({FEATURED})",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="output folder")
    return parser


def _options(argv: list[str]) -> Options:
    args = _parser().parse_args(argv)
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(unknown)}")
    quick = args.quick
    if not 0.0 <= args.timeline_share <= 0.5:
        raise SystemExit("--timeline-share must be between 0 and 0.5")
    return Options(
        scenarios=[SCENARIOS[name] for name in names],
        modes=[int(mode) for mode in args.modes.split(",")],
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        duration=args.duration if args.duration is not None else (3.0 if quick else 10.0),
        window_copies=args.window_copies,
        max_window=args.max_window,
        ack_window=args.ack_window,
        payload=args.payload,
        streams_per_connection=args.streams_per_connection,
        message_rate=args.message_rate,
        message_burst=args.message_burst,
        bare=args.bare,
        attempts=max(1, args.attempts),
        max_other=args.max_other,
        quiet_cpu=args.quiet_cpu,
        logins=args.logins,
        timeline_share=args.timeline_share,
        bar_copies=args.bar_copies,
        memory_streams=args.memory_streams,
        memory_rounds=args.memory_rounds or (1 if quick else 3),
        burst_streams=args.burst_streams,
        burst_rounds=args.burst_rounds or (1 if quick else 3),
        probe_rate=args.probe_rate,
        quiet_seconds=args.quiet_seconds,
        idle_streams=args.idle_streams
        if args.idle_streams is not None
        else (2000 if quick else 10000),
        idle_heartbeat=args.idle_heartbeat,
        soak_minutes=args.soak_minutes if args.soak else 0.0,
        soak_interval=args.soak_interval,
        soak_scenario=args.soak_scenario,
        soak_mode=args.soak_mode,
        soak_rate=args.soak_rate,
        profile_seconds=(
            args.profile_seconds if args.profile_seconds is not None else (0 if quick else 20)
        ),
        profile_scenario=args.profile_scenario,
        results=args.results,
    )


def _users_needed(options: Options) -> int:
    if options.soak_minutes:
        return SCENARIOS[options.soak_scenario].streams
    return max(
        [s.streams for s in options.scenarios]
        + [
            options.memory_streams,
            options.burst_streams + 1,
            options.idle_streams,
            options.logins,
            1,
        ]
    )


async def _main(options: Options) -> bool:
    """Run what the options ask for; False if a soak lost or duplicated anything."""
    started = time.time()
    print(f"load average before: {os.getloadavg()}", flush=True)
    async with fresh_database(server_url(), prefix="atomchat_bench") as url:
        database = BenchDatabase(url)
        needed = _users_needed(options)
        suite = Suite(options, database, await database.add_users(needed))
        print(
            f"database {database.name}; {needed} users;"
            f" ATOMCHAT_STREAM_BUFFER={options.stream_buffer}",
            flush=True,
        )
        if options.soak_minutes:
            await suite.soak()
        else:
            if options.memory_streams:
                await suite.memory()
            if options.idle_streams:
                await suite.idle()
            if options.burst_streams:
                await suite.burst()
            for scenario in options.scenarios:
                await suite.scenario(scenario)
    print()
    print(report.render(options, suite.outcome))
    print(f"\nload average after: {os.getloadavg()}")
    saved = report.save(options, suite.outcome, started)
    print(f"results: {saved}")
    for picture in charts.draw(saved):
        print(f"picture: {picture}")
    return suite.outcome.soak is None or suite.outcome.soak.ok


def main(argv: list[str] | None = None) -> None:
    ok = asyncio.run(_main(_options(sys.argv[1:] if argv is None else argv)))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
