"""The results as one table (and a few short ones) on the terminal, and as JSON."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.scenarios import FEATURED
from bench.suite import (
    AT_BAR,
    ATOMCHAT,
    BARE,
    FLAT,
    FLAT_TIMELINE,
    PACED,
    PACED_TIMELINE,
    PACED_WITH_LOGINS,
    Options,
    Outcome,
    Row,
)
from bench.tracking import ROW_SAMPLE

COLUMNS = (
    ("scenario", 14),
    ("mode", 14),
    ("run", 12),
    ("msg/s", 8),
    ("copies/s", 9),
    ("per frame", 9),
    ("p50 ms", 8),
    ("p95 ms", 8),
    ("p99 ms", 8),
    ("loss", 5),
    ("dup", 4),
    ("leaks", 5),
    ("server%", 7),
    ("db%", 5),
    ("gen%", 5),
    ("other%", 6),
    ("load", 5),
)


INGESTION_COLUMNS = (
    ("scenario", 14),
    ("mode", 14),
    ("run", 12),
    ("acked/s", 8),
    ("stored/s", 8),
    ("ack p50", 8),
    ("ack p99", 8),
    ("copy p99", 8),
    ("rows", 8),
    ("acked", 8),
    ("server%", 7),
    ("db%", 5),
    ("gen%", 5),
    ("other%", 6),
)


def _mode(row: Row) -> str:
    return BARE if row.target == BARE else f"{ATOMCHAT} mb={row.max_batch}"


def _cells(row: Row) -> list[str]:
    r = row.result
    return [
        row.scenario.describe(),
        _mode(row),
        row.kind,
        f"{r.messages_per_second:.0f}",
        f"{r.copies_per_second:.0f}",
        f"{r.copies_per_frame:.1f}",
        f"{r.p50:.1f}",
        f"{r.p95:.1f}",
        f"{r.p99:.1f}",
        str(r.loss),
        str(r.duplicates),
        str(r.leaks),
        f"{r.server_cpu:.0f}",
        f"{r.database_cpu:.0f}",
        f"{r.generator_cpu:.0f}",
        f"{r.other_cpu:.0f}",
        f"{r.load_average:.2f}",
    ]


def _line(cells: list[str], columns: tuple[tuple[str, int], ...] = COLUMNS) -> str:
    return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, columns, strict=True))


def _ingestion_cells(row: Row) -> list[str]:
    r = row.result
    counted = r.rows_counted
    return [
        row.scenario.describe(),
        _mode(row),
        row.kind,
        f"{r.acks_per_second:.0f}",
        f"{r.persisted_per_second:.0f}" if counted else "-",
        f"{r.ack_p50:.1f}",
        f"{r.ack_p99:.1f}",
        f"{r.p99:.1f}",
        str(r.rows_after) if counted else "-",
        str(r.acked_total),
        f"{r.server_cpu:.0f}",
        f"{r.database_cpu:.0f}",
        f"{r.generator_cpu:.0f}",
        f"{r.other_cpu:.0f}",
    ]


def _ingestion(outcome: Outcome) -> list[str]:
    """Where every stream sends: messages acked and stored per second, and ack latency."""
    rows = [row for row in outcome.rows if row.scenario.ingestion]
    if not rows:
        return []
    columns = INGESTION_COLUMNS
    out = [
        "",
        "Ingestion (every stream sends): acks and rows stored per second in the window,"
        " send-to-ack ms, rows in the database after the run beside the sends acked:",
        _line([name for name, _ in columns], columns),
        "-" * len(_line([""] * len(columns), columns)),
    ]
    for row in rows:
        out.append(_line(_ingestion_cells(row), columns))
        r = row.result
        if r.rows_counted and r.rows_after != r.acked_total:
            out.append(f"{'':>14}  ^ ROWS {r.rows_after} != sends acked {r.acked_total}")
    return out


def _notes(row: Row) -> list[str]:
    r = row.result
    notes = []
    if r.failure:
        notes.append(f"FAILED: {r.failure}")
    for error, count in r.stream_errors.items():
        notes.append(f"{count} streams ended {error}")
    if r.send_errors or r.unacked:
        refusals = ", ".join(f"{count} {code}" for code, count in sorted(r.send_refusals.items()))
        refused = f" (refused: {refusals})" if refusals else ""
        notes.append(f"{r.send_errors} send errors{refused}, {r.unacked} sends never acked")
    if r.out_of_order:
        notes.append(f"{r.out_of_order} messages out of order")
    if row.attempts > 1:
        notes.append(f"measured {row.attempts} times (other jobs' CPU); the quietest is shown")
    if row.kind not in (FLAT, FLAT_TIMELINE) and r.window_stalls:
        notes.append(f"paced senders waited for the window {r.window_stalls} times")
    if r.edits or r.reactions:
        share = r.update_copies / r.copies if r.copies else 0.0
        notes.append(
            f"{r.edits} edits and {r.reactions} reactions made; updates {share:.1%} of copies;"
            f" edits alone p50 {r.edit_p50:.1f} / p99 {r.edit_p99:.1f} ms"
            f" ({r.edit_samples} copies)"
        )
    for error, count in r.call_errors.items():
        notes.append(f"{count} edits or reactions failed: {error}")
    return notes


def _find(outcome: Outcome, scenario: str, target: str, max_batch: int, kind: str) -> Row | None:
    for row in outcome.rows:
        if (row.scenario.name, row.target, row.max_batch, row.kind) == (
            scenario,
            target,
            max_batch,
            kind,
        ):
            return row
    return None


def render(options: Options, outcome: Outcome) -> str:
    out = [_line([name for name, _ in COLUMNS]), "-" * len(_line([""] * len(COLUMNS)))]
    for row in outcome.rows:
        out.append(_line(_cells(row)))
        out.extend(f"{'':>14}  ^ {note}" for note in _notes(row))
    names = list(dict.fromkeys(row.scenario.name for row in outcome.rows))
    fractions = []
    for name in names:
        bare = _find(outcome, name, BARE, 0, FLAT)
        for max_batch in options.modes:
            ours = _find(outcome, name, ATOMCHAT, max_batch, FLAT)
            if bare and ours and bare.result.copies_per_second:
                share = ours.result.copies_per_second / bare.result.copies_per_second
                fractions.append(
                    f"  {ours.scenario.describe():14} mb={max_batch:<3} {share:6.1%} of the bare"
                    f" {bare.result.copies_per_second:.0f} copies/s"
                )
    if fractions:
        out += ["", "Flat out, AtomChat as a share of the bare grpc.aio fan-out:", *fractions]
    out += _ingestion(outcome)
    out += _breakdown(outcome)
    out += _timeline(options, outcome, names)
    storms = []
    for max_batch in options.modes:
        quiet = _find(outcome, FEATURED, ATOMCHAT, max_batch, PACED)
        storm = _find(outcome, FEATURED, ATOMCHAT, max_batch, PACED_WITH_LOGINS)
        if quiet and storm:
            storms.append(
                f"  mb={max_batch:<3} p99 {quiet.result.p99:.1f} ms quiet,"
                f" {storm.result.p99:.1f} ms with the storm"
                f" (p50 {quiet.result.p50:.1f} / {storm.result.p50:.1f} ms);"
                f" {storm.result.logins_per_second:.1f} logins/s,"
                f" login errors {storm.result.login_errors or 'none'}"
            )
    if storms:
        out += ["", f"Login storm ({options.logins} clients) beside {FEATURED} paced:", *storms]
    out += _bar(options, outcome)
    if outcome.memory is not None:
        out += ["", outcome.memory.describe()]
    if outcome.burst is not None:
        out += ["", outcome.burst.describe()]
    if outcome.idle is not None:
        out += ["", outcome.idle.describe()]
    if outcome.idle_bare is not None:
        out += [f"Bare server: {outcome.idle_bare.describe()}"]
    if outcome.soak is not None:
        out += ["", outcome.soak.describe()]
    for label, spots in outcome.hot_spots.items():
        out += ["", f"Server hot spots under {label} flat out (own% / total% of samples):"]
        out += [f"  {s.own:5.1f}  {s.total:5.1f}  {s.function}" for s in spots]
    return "\n".join(out)


def _pair(stages: dict[str, dict[str, float]], key: str, digits: int = 1) -> str:
    stage = stages.get(key)
    if not stage or not stage["n"]:
        return "-"
    return f"{stage['p50']:.{digits}f} / {stage['p99']:.{digits}f}"


def _mean(stages: dict[str, dict[str, float]], key: str) -> float | None:
    stage = stages.get(key)
    return stage["mean"] if stage and stage["n"] else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _breakdown(outcome: Outcome) -> list[str]:
    """Where a message's time goes in each paced run, as two markdown tables."""
    rows = [
        row
        for row in outcome.rows
        if row.kind not in (FLAT, FLAT_TIMELINE) and row.result.stages.get("send_client")
    ]
    if not rows:
        return []
    out = [
        "",
        "Where the latency goes, paced runs (ms; commit, row->fan-out and batch from the"
        " server's metrics over the window, bucket-interpolated; the rest from the generator;"
        f" row->client from one copy in {ROW_SAMPLE} on each stream). Row time is created_at, its"
        " transaction's now(): send->row is the wait for a group commit to begin (and the"
        " network); row->fan-out is each round's oldest message (once per round) and"
        " includes the commit.",
        "",
        "| scenario | mode | run | copies/s | send->row p50 / p99 | commit p50 / p99"
        " | row->fan-out (round's oldest) p50 / p99 | row->client p50 / p99 | e2e p50 / p99"
        " | send->ack p50 / p99 | posts per commit p50 / p99 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        stages = row.result.stages
        out.append(
            f"| {row.scenario.describe()} | {_mode(row)} | {row.kind}"
            f" | {row.result.copies_per_second:.0f} | {_pair(stages, 'send_row')}"
            f" | {_pair(stages, 'commit')} | {_pair(stages, 'row_fanout')}"
            f" | {_pair(stages, 'row_client')} | {_pair(stages, 'send_client')}"
            f" | {_pair(stages, 'send_ack')} | {_pair(stages, 'batch_size', 0)} |"
        )
    out += [
        "",
        "Means (they add up where percentiles do not): e2e = send->row + row->client;"
        " row->client = row->fan-out (every message's, from the server's counters; it"
        " includes the commit) + the rest, which is the stream's writer, gRPC, the network"
        " and the generator's reading; the bare server has no commit and no metrics.",
        "",
        "| scenario | mode | run | send->row | commit | row->fan-out (round's oldest)"
        " | row->fan-out | rest | row->client | e2e | e2e - send->row - row->client |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        stages = row.result.stages
        send_row = _mean(stages, "send_row")
        fanout = _mean(stages, "row_fanout_each")
        client = _mean(stages, "row_client")
        e2e = _mean(stages, "send_client")
        rest = client - fanout if client is not None and fanout is not None else None
        unexplained = (
            e2e - send_row - client
            if e2e is not None and send_row is not None and client is not None
            else None
        )
        out.append(
            f"| {row.scenario.describe()} | {_mode(row)} | {row.kind} | {_ms(send_row)}"
            f" | {_ms(_mean(stages, 'commit'))} | {_ms(_mean(stages, 'row_fanout'))}"
            f" | {_ms(fanout)} | {_ms(rest)} | {_ms(client)}"
            f" | {_ms(e2e)} | {_ms(unexplained)} |"
        )
    return out


def _timeline(options: Options, outcome: Outcome, names: list[str]) -> list[str]:
    """Each timeline-mix run beside the plain run of the same scenario and mode."""
    lines = []
    for name in names:
        for max_batch in options.modes:
            for plain_kind, mixed_kind in ((FLAT, FLAT_TIMELINE), (PACED, PACED_TIMELINE)):
                plain = _find(outcome, name, ATOMCHAT, max_batch, plain_kind)
                mixed = _find(outcome, name, ATOMCHAT, max_batch, mixed_kind)
                if plain is None or mixed is None:
                    continue
                p, m = plain.result, mixed.result
                lines.append(
                    f"  {plain.scenario.describe():14} mb={max_batch:<3} {plain_kind:5}"
                    f" copies/s {p.copies_per_second:8.0f} -> {m.copies_per_second:8.0f}"
                    f"  p50 {p.p50:7.1f} -> {m.p50:7.1f} ms  p99 {p.p99:7.1f} -> {m.p99:7.1f} ms"
                )
    if not lines:
        return []
    title = (
        f"Timeline mix ({options.timeline_share:.0%} of events edits and reactions),"
        " plain -> mixed:"
    )
    return ["", title, *lines]


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def _bar(options: Options, outcome: Outcome) -> list[str]:
    """The product's bar, checked against the featured scenario's runs."""
    if not options.bar_copies:
        return []
    lines = []
    for max_batch in options.modes:
        flat = _find(outcome, FEATURED, ATOMCHAT, max_batch, FLAT)
        if flat is None:
            continue
        copies = flat.result.copies_per_second
        meets = _verdict(copies >= options.bar_copies)
        line = f"  mb={max_batch:<3} flat {copies:.0f} copies/s: {meets}"
        paced = _find(outcome, FEATURED, ATOMCHAT, max_batch, AT_BAR)
        if paced is None:
            line += f"; no run at {options.bar_copies / 2:.0f} copies/s (beyond flat out)"
        else:
            p99 = paced.result.p99
            line += (
                f"; p99 {p99:.1f} ms at {paced.result.copies_per_second:.0f} copies/s:"
                f" {_verdict(p99 < 100)}"
            )
        lines.append(line)
    runs = [row.result for row in outcome.rows if row.target == ATOMCHAT]
    faults = sum(r.loss + r.duplicates + r.leaks for r in runs)
    lines.append(
        f"  loss + duplicates + leaks over all {len(runs)} AtomChat runs: {faults}"
        f" ({_verdict(faults == 0)})"
    )
    if not lines[:-1]:
        return []
    title = f"The bar ({options.bar_copies:.0f} copies/s at {FEATURED}, p99 < 100 ms at half):"
    return ["", title, *lines]


def save(options: Options, outcome: Outcome, started: float) -> Path:
    options.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    path = options.results / f"bench-{stamp}.json"
    data: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "options": {
            **{k: v for k, v in asdict(options).items() if k not in ("scenarios", "results")},
            "scenarios": [s.name for s in options.scenarios],
            "stream_buffer": options.stream_buffer,
        },
        "runs": [
            {
                "scenario": row.scenario.name,
                "shape": row.scenario.describe(),
                "ingestion": row.scenario.ingestion,
                "target": row.target,
                "max_batch": row.max_batch,
                "run": row.kind,
                "rate_per_channel": row.rate,
                "attempts": row.attempts,
                **row.result.to_json(),
            }
            for row in outcome.rows
        ],
        "memory": asdict(outcome.memory) if outcome.memory is not None else None,
        "burst": asdict(outcome.burst) if outcome.burst is not None else None,
        "idle": asdict(outcome.idle) if outcome.idle is not None else None,
        "idle_bare": asdict(outcome.idle_bare) if outcome.idle_bare is not None else None,
        "soak": asdict(outcome.soak) if outcome.soak is not None else None,
        "hot_spots": {
            label: [asdict(spot) for spot in spots] for label, spots in outcome.hot_spots.items()
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
