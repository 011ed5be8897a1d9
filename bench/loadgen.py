"""The load generator process: `python -m bench.loadgen < job.json`.

Opens every stream of the job over a moderate number of HTTP/2 connections,
starts the senders (and the login storm, if any), measures one window after
the warm-up, waits for every message to reach every stream, and prints
`measuring` when the window opens, `measured` when it closes and `result
{json}` at the end.

A soak job (`report_every` > 0) also prints `interval {json}` at the end of
each reporting interval of its window: copies/s and latency percentiles of
that interval alone (its latencies are then dropped, so that a long run
holds no more than one interval's). Its result's percentiles are then the
worst interval's p95/p99/max and the median interval's p50.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import uvloop

from bench import stats
from bench.job import Job, Result
from bench.logins import LoginStorm
from bench.persisted import RowCounter
from bench.senders import Sender
from bench.streams import JOIN_CONCURRENCY, Stream, connect, open_call
from bench.tracking import ChannelTracker, Window

SETTLE_SECONDS = 30.0


class Run:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.window = Window()
        self.trackers = [ChannelTracker(c.channel_id, len(c.tokens)) for c in job.channels]
        count = sum(len(c.tokens) for c in job.channels)
        self.connections = [
            connect(job.target)
            for _ in range(max(1, math.ceil(count / job.streams_per_connection)))
        ]
        self.streams: list[Stream] = []
        self.senders: list[Sender] = []
        # (interval, offset) of each sender: its share of its channel's rate.
        self.paces: list[tuple[float | None, float]] = []
        self.receivers: list[asyncio.Task[None]] = []
        self.rows = (
            RowCounter(job.database_url, [c.channel_id for c in job.channels])
            if job.database_url
            else None
        )

    async def open(self) -> None:
        if self.rows is not None:
            await self.rows.open()
        gate = asyncio.Semaphore(JOIN_CONCURRENCY)
        pending: list[Coroutine[Any, Any, None]] = []
        for channel, tracker in zip(self.job.channels, self.trackers, strict=True):
            for index, token in enumerate(channel.tokens):
                connection = self.connections[len(pending) % len(self.connections)]
                stream = Stream(open_call(connection, token), tracker, self.window)
                self.streams.append(stream)
                if index < channel.senders:
                    self.senders.append(
                        Sender(
                            stream,
                            len(self.senders),
                            window=self.job.window,
                            ack_window=self.job.ack_window,
                            size=self.job.payload,
                            connection=connection,
                            token=token,
                            timeline_share=self.job.timeline_share,
                        )
                    )
                    self.paces.append(self._pace(index, channel.senders))
                pending.append(self._join(stream, gate))
        await asyncio.gather(*pending)

    async def _join(self, stream: Stream, gate: asyncio.Semaphore) -> None:
        async with gate:
            await stream.join(self.job.max_batch)
        self.receivers.append(asyncio.create_task(stream.receive()))

    def _pace(self, index: int, senders: int) -> tuple[float | None, float]:
        if self.job.rate is None:
            return None, 0.0
        interval = senders / self.job.rate
        return interval, interval * index / senders

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once if a stream failed."""
        try:
            await asyncio.wait_for(self.window.failed.wait(), seconds)
        except TimeoutError:
            return

    async def measure(self) -> Result:
        job = self.job
        result = Result()
        sending = [
            asyncio.create_task(sender.run(interval=interval, offset=offset))
            for sender, (interval, offset) in zip(self.senders, self.paces, strict=True)
        ]
        storm = LoginStorm(job.logins, job.target) if job.logins is not None else None
        if storm is not None:
            storm.start()
        await self._pause(job.warmup)
        if job.rate is None:
            await self._steady()
        server = stats.CpuMeter(stats.process_tree(job.server_pid))
        database = stats.CpuMeter(stats.database_backends(job.database))
        generator = stats.CpuMeter(stats.process_tree(os.getpid()))
        machine = stats.MachineMeter()
        rows_before = await self.rows.count() if self.rows is not None else 0
        for meter in (server, database, generator, machine):
            meter.start()
        print("measuring", flush=True)
        started = time.monotonic()
        self.window.open()
        if storm is not None:
            storm.opened_ns = self.window.open_ns
        if job.report_every > 0:
            await self._intervals(job.duration, job.report_every, result)
        else:
            await self._pause(job.duration)
        self.window.close()
        print("measured", flush=True)
        for sender in self.senders:
            sender.stopping = True
        result.seconds = time.monotonic() - started
        result.copies = self.window.copies_inside
        result.frames = self.window.frames_inside
        result.update_copies = self.window.updates_inside
        result.acks = self.window.acks_inside
        result.messages = result.copies * len(self.trackers) / len(self.streams)
        if storm is not None:
            storm.closed_ns = self.window.close_ns
        result.server_cpu = server.percent(result.seconds)
        result.database_cpu = database.percent(result.seconds)
        result.generator_cpu = generator.percent(result.seconds)
        result.other_cpu = max(
            0.0,
            machine.percent(result.seconds)
            - result.server_cpu
            - result.database_cpu
            - result.generator_cpu,
        )
        result.load_average = os.getloadavg()[0]
        if storm is not None:
            await storm.stop()
            result.logins = storm.logins
            result.login_errors = dict(storm.errors)
        if self.rows is not None:
            result.persisted = await self.rows.count() - rows_before
        await self._settle(sending)
        if self.rows is not None:
            result.rows_counted = True
            result.rows_after = await self.rows.count()
        self._check(result)
        return result

    async def _intervals(self, duration: float, every: float, result: Result) -> None:
        """Report each interval of the window; keep only their percentiles."""
        window = self.window
        loop = asyncio.get_running_loop()
        ends = loop.time() + duration
        number = 0
        while not window.failed.is_set() and loop.time() < ends - 0.001:
            number += 1
            started, copies = loop.time(), window.copies
            await self._pause(min(every, ends - loop.time()))
            seconds = loop.time() - started
            latencies = sorted(window.latencies)
            window.latencies.clear()
            window.row_latencies.clear()
            figures = {
                "interval": number,
                "seconds": round(seconds, 3),
                "copies_per_second": round((window.copies - copies) / seconds, 1),
                "p50": stats.percentile(latencies, 0.50) / 1e6,
                "p95": stats.percentile(latencies, 0.95) / 1e6,
                "p99": stats.percentile(latencies, 0.99) / 1e6,
                "max": stats.percentile(latencies, 1.0) / 1e6,
                "send_errors": sum(sender.errors for sender in self.senders),
                "streams_failed": sum(1 for stream in self.streams if stream.error),
            }
            result.intervals.append(figures)
            print("interval", json.dumps(figures), flush=True)

    async def _steady(self) -> None:
        """Flat out, wait until a whole window has gone round in every channel."""

        async def filled() -> None:
            for tracker in self.trackers:
                while tracker.delivered < self.job.window:
                    await tracker.changed()

        waiting = asyncio.create_task(filled())
        failed = asyncio.create_task(self.window.failed.wait())
        await asyncio.wait(
            {waiting, failed}, timeout=SETTLE_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        failed.cancel()

    async def _settle(self, sending: list[asyncio.Task[None]]) -> None:
        """Let the senders finish, then wait until every message reached every stream."""

        async def settled() -> None:
            await asyncio.gather(*sending)
            await asyncio.gather(*(sender.settle() for sender in self.senders))
            for tracker in self.trackers:
                while not tracker.settled:
                    await tracker.changed()

        waiting = asyncio.create_task(settled())
        failed = asyncio.create_task(self.window.failed.wait())
        timeout = self.job.duration + SETTLE_SECONDS
        await asyncio.wait({waiting, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            self.window.fail(
                self.window.failure or f"messages still missing {timeout:.0f}s after the window"
            )
            for tracker in self.trackers:
                tracker.release()
            await waiting
        failed.cancel()

    def _check(self, result: Result) -> None:
        if result.intervals:
            for name in ("p95", "p99", "max"):
                setattr(result, name, max(interval[name] for interval in result.intervals))
            result.p50 = statistics.median(interval["p50"] for interval in result.intervals)
        else:
            latencies = sorted(self.window.latencies)
            result.latency_samples = len(latencies)
            for name, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
                setattr(result, name, stats.percentile(latencies, fraction) / 1e6)
            result.cdf = stats.cdf(latencies)
            edits = sorted(self.window.edit_latencies)
            result.edit_samples = len(edits)
            result.edit_p50 = stats.percentile(edits, 0.50) / 1e6
            result.edit_p99 = stats.percentile(edits, 0.99) / 1e6
            acks = sorted(self.window.ack_latencies)
            result.ack_samples = len(acks)
            result.ack_p50 = stats.percentile(acks, 0.50) / 1e6
            result.ack_p99 = stats.percentile(acks, 0.99) / 1e6
            result.ack_cdf = stats.cdf(acks)
            result.stages = {
                "send_row": stats.stage(sorted(self.window.send_row_latencies)),
                "send_ack": stats.stage(acks),
                "row_client": stats.stage(sorted(self.window.row_latencies)),
                "send_client": stats.stage(latencies),
            }
        for stream in self.streams:
            # What a channel committed: the last seq acked, or seen by any stream.
            stream.tracker.last_seq = max(stream.tracker.last_seq, stream.next_seq - 1)
        errors: Counter[str] = Counter()
        for stream in self.streams:
            result.loss += stream.loss()
            result.duplicates += stream.duplicates
            result.leaks += stream.leaks
            result.out_of_order += stream.out_of_order
            if stream.error:
                errors[stream.error] += 1
        for tracker in self.trackers:
            result.sends += tracker.sent
            result.acked_total += tracker.acked_sends
            # More messages committed than sends acknowledged: posted twice.
            result.duplicates += max(0, tracker.last_seq - tracker.acked)
            result.window_stalls += tracker.stalls
        result.send_errors = sum(sender.errors for sender in self.senders)
        result.send_refusals = dict(sum((sender.refusals for sender in self.senders), Counter()))
        result.edits = sum(sender.edits for sender in self.senders)
        result.reactions = sum(sender.reactions for sender in self.senders)
        result.call_errors = dict(sum((sender.call_errors for sender in self.senders), Counter()))
        result.unacked = sum(sender.unacked for sender in self.senders)
        result.stream_errors = dict(errors)
        result.failure = self.window.failure

    async def close(self) -> None:
        for sender in self.senders:
            sender.close()
        for stream in self.streams:
            stream.closing = True
            stream.call.cancel()
        # A cancelled call's reader ends with CancelledError: expected here.
        await asyncio.gather(*self.receivers, return_exceptions=True)
        for connection in self.connections:
            await connection.close()
        if self.rows is not None:
            await self.rows.close()


async def main() -> None:
    job = Job.loads(sys.stdin.read())
    run = Run(job)
    try:
        await run.open()
        # The generator shares the machine with the server it measures: like
        # the server, it keeps the cyclic collector off its hot path.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        result = await run.measure()
    finally:
        await run.close()
    print("result", json.dumps(result.to_json()), flush=True)


if __name__ == "__main__":
    uvloop.run(main())
