#!/usr/bin/env python3
"""x402-gateway soak (issue 14; docs/reliability.md). Started by scripts/soak.sh after the same
installs and release build as the benchmark.

Runs mixed traffic against one gateway (SQLite ledger, the default) for SOAK_MINUTES: 402
challenges, free requests, free 100 MB downloads, paid requests against the zero-latency
facilitator stub (with replays that must be refused), slowloris heads that must get 408,
pipelined requests whose answers must come back in order, and clients that vanish: mid-body,
right after sending a payment, mid-download. A warm-up phase comes first; after each phase the
traffic stops for a few seconds and the gateway's RSS and open descriptors are sampled at rest.
Targets: RSS at rest after the run ≤ 1.10 × RSS at rest after the warm-up, descriptors at rest
back where they were (± SOAK_FD_SLACK), 0 unexpected answers, the gateway alive throughout.

Knobs: SOAK_MINUTES [30] (also the script's argument), SOAK_WARMUP_SECONDS [min(120, 10 % of the
run)], SOAK_SAMPLE_SECONDS [10], SOAK_FD_SLACK [8], BENCH_GATEWAY_BIN, BENCH_KEEP=1.
Results: .build-release/soak/last-run.{md,json}.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import payments  # noqa: E402
import run  # noqa: E402

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
WARMUP = float(os.environ.get("SOAK_WARMUP_SECONDS", str(min(120.0, MINUTES * 6))))
SAMPLE_EVERY = float(os.environ.get("SOAK_SAMPLE_SECONDS", "10"))
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "8"))
HEADER_TIMEOUT = 2  # seconds; the gateway is configured with it for the slowloris checks
RESULTS_DIR = os.path.join(run.ROOT, ".build-release", "soak")


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Tally:
    """Per kind of traffic: how many exchanges went as expected, and the unexpected ones."""

    def __init__(self) -> None:
        self.ok: dict[str, int] = {}
        self.unexpected: dict[str, int] = {}
        self.examples: list[str] = []

    def good(self, kind: str) -> None:
        self.ok[kind] = self.ok.get(kind, 0) + 1

    def bad(self, kind: str, what: str) -> None:
        self.unexpected[kind] = self.unexpected.get(kind, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{time.strftime('%H:%M:%S')} {kind}: {what}")


async def read_response(reader: asyncio.StreamReader, head_only_body: bool = False) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response: status, lower-case headers, body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if head_only_body:
        return status, headers, b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.read()
    return status, headers, body


class Soak:
    def __init__(self, bench: run.Bench) -> None:
        self.b = bench
        self.port = bench.gateway_port
        self.tally = Tally()
        self.stop = asyncio.Event()
        self.payments: queue.Queue[str] = queue.Queue()
        self.spent: list[str] = []
        self.accepted, self.resource = run.challenge_of(f"http://127.0.0.1:{self.port}/paid")
        self.signer_stop = threading.Event()
        self.signer = threading.Thread(target=self._sign, daemon=True)
        self.signer.start()

    def _sign(self) -> None:
        """Keeps a few thousand fresh payments ready (one process: no fork from a thread)."""
        while not self.signer_stop.is_set():
            if self.payments.qsize() < 1000:
                for header in payments.generate(self.accepted, self.resource, 1000, workers=1):
                    self.payments.put(header)
            else:
                time.sleep(0.2)

    async def connect(self):
        return await asyncio.open_connection("127.0.0.1", self.port)

    def request(self, path: str, extra: str = "", method: str = "GET") -> bytes:
        return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{extra}\r\n".encode()

    # --- traffic kinds ---------------------------------------------------------------------------

    async def keepalive(self, kind: str, path: str, expect: int, body: bytes | None, pause: float) -> None:
        """Requests on one kept-alive connection, reconnecting when the gateway closes it."""
        writer = None
        while not self.stop.is_set():
            try:
                if writer is None:
                    reader, writer = await self.connect()
                writer.write(self.request(path))
                status, _, got = await asyncio.wait_for(read_response(reader), 30)
                if status == expect and (body is None or got == body):
                    self.tally.good(kind)
                else:
                    self.tally.bad(kind, f"status {status}, {len(got)} bytes")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.tally.bad(kind, repr(e))
                writer = None
            await asyncio.sleep(pause)
        if writer:
            writer.close()

    async def paid(self, pause: float) -> None:
        """Fresh payments must be served; every tenth request replays a spent one, which must be refused."""
        loop = asyncio.get_running_loop()
        n = 0
        while not self.stop.is_set():
            n += 1
            replay = n % 10 == 0 and self.spent
            header = random.choice(self.spent[-200:]) if replay else await loop.run_in_executor(None, self.payments.get)
            try:
                reader, writer = await self.connect()
                writer.write(self.request("/paid", f"PAYMENT-SIGNATURE: {header}\r\nConnection: close\r\n"))
                status, headers, got = await asyncio.wait_for(read_response(reader), 30)
                writer.close()
                if replay:
                    if status == 402:
                        self.tally.good("paid replay refused")
                    else:
                        self.tally.bad("paid replay refused", f"status {status}")
                elif status == 200 and got == run.SMALL_BODY and "payment-response" in headers:
                    self.tally.good("paid")
                    self.spent.append(header)
                else:
                    self.tally.bad("paid", f"status {status}: {got[:200]!r}")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.tally.bad("paid", repr(e))
            await asyncio.sleep(pause)

    async def download(self, pause: float) -> None:
        """A free 100 MB download read to its end."""
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect()
                writer.write(self.request("/free/big.bin", "Connection: close\r\n"))
                status, headers, _ = await asyncio.wait_for(read_response(reader, head_only_body=True), 30)
                total = 0
                while chunk := await asyncio.wait_for(reader.read(1 << 20), 30):
                    total += len(chunk)
                writer.close()
                if status == 200 and total == run.BIG_BYTES:
                    self.tally.good("download 100 MB")
                else:
                    self.tally.bad("download 100 MB", f"status {status}, {total} bytes")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.tally.bad("download 100 MB", repr(e))
            await asyncio.sleep(pause)

    async def slowloris(self, pause: float) -> None:
        """A head trickled a byte every 300 ms: 408 and the close within headerTimeout (+ slack)."""
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect()
                started = time.monotonic()
                trickle = self.request("/free/small.json", "X-Slow: " + "x" * 200 + "\r\n")
                answer = asyncio.ensure_future(read_response(reader))
                for byte in trickle[:-4]:
                    if answer.done():
                        break
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.3)
                status, _, _ = await asyncio.wait_for(answer, HEADER_TIMEOUT + 5)
                closed = await asyncio.wait_for(reader.read(1), 5) == b""
                waited = time.monotonic() - started
                writer.close()
                if status == 408 and closed and HEADER_TIMEOUT - 0.5 <= waited <= HEADER_TIMEOUT + 3:
                    self.tally.good("slowloris 408")
                else:
                    self.tally.bad("slowloris 408", f"status {status}, closed {closed}, after {waited:.1f}s")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.tally.bad("slowloris 408", repr(e))
            await asyncio.sleep(pause)

    async def pipeline(self, pause: float) -> None:
        """Eight requests in one write; the answers in order."""
        paths = ["/free/small.json", "/paid", "/nowhere", "/free/small.json", "/paid", "/free/small.json", "/paid", "/free/small.json"]
        expected = [200, 402, 404, 200, 402, 200, 402, 200]
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect()
                writer.write(b"".join(self.request(p) for p in paths))
                statuses = [(await asyncio.wait_for(read_response(reader), 30))[0] for _ in paths]
                writer.close()
                if statuses == expected:
                    self.tally.good("pipelined x8")
                else:
                    self.tally.bad("pipelined x8", f"{statuses}")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.tally.bad("pipelined x8", repr(e))
            await asyncio.sleep(pause)

    async def vanish(self, pause: float) -> None:
        """Clients that leave: mid-body, right after a payment, mid-download. Nothing to expect from
        them; what is checked is that every other kind of traffic stays as expected meanwhile."""
        loop = asyncio.get_running_loop()
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                reader, writer = await self.connect()
                if n % 3 == 0:
                    writer.write(self.request("/free/upload", "Content-Length: 1000000\r\n", method="POST") + b"x" * 100_000)
                elif n % 3 == 1:
                    header = await loop.run_in_executor(None, self.payments.get)
                    writer.write(self.request("/paid", f"PAYMENT-SIGNATURE: {header}\r\n"))
                else:
                    writer.write(self.request("/free/big.bin"))
                    await asyncio.wait_for(reader.readexactly(1 << 20), 30)
                await writer.drain()
                writer.transport.abort()  # RST, not a polite close
                self.tally.good("vanishing clients")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.tally.bad("vanishing clients", repr(e))
            await asyncio.sleep(pause)

    async def phase(self, seconds: float) -> None:
        self.stop.clear()
        tasks = [
            self.keepalive("402 challenge", "/paid", 402, None, 0.01),
            self.keepalive("402 challenge", "/paid", 402, None, 0.01),
            self.keepalive("free", "/free/small.json", 200, run.SMALL_BODY, 0.01),
            self.keepalive("free", "/free/small.json", 200, run.SMALL_BODY, 0.01),
            self.paid(0.02),
            self.paid(0.02),
            self.download(3.0),
            self.slowloris(0.5),
            self.slowloris(0.5),
            self.pipeline(0.05),
            self.vanish(0.2),
        ]
        running = [asyncio.ensure_future(t) for t in tasks]
        await asyncio.sleep(seconds)
        self.stop.set()
        await asyncio.wait(running, timeout=60)


def at_rest(b: run.Bench) -> dict:
    time.sleep(3)
    pid = b.gateway.pid
    return {"rss_mb": run.status_kb(pid, "VmRSS") / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": len(os.listdir(f"/proc/{pid}/task"))}


def main() -> None:
    started = time.time()
    b = run.Bench()

    def on_signal(signum, frame):
        raise KeyboardInterrupt  # the finally below stops everything

    signal.signal(signal.SIGTERM, on_signal)
    samples: list[dict] = []
    try:
        b.start_backend()
        b.start_gateway(storage="sqlite", extra=f"limits: {{ headerTimeout: {HEADER_TIMEOUT}s }}\n")
        soak = Soak(b)
        pid = b.gateway.pid
        sampling = threading.Event()

        def sample() -> None:
            t0 = time.time()
            while not sampling.wait(SAMPLE_EVERY):
                if b.gateway.poll() is not None:
                    return
                samples.append({"t": round(time.time() - t0), "rss_mb": run.status_kb(pid, "VmRSS") / 1024,
                                "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": run.group_cpu_seconds(pid),
                                "load": run.loadavg()})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        loop = asyncio.new_event_loop()
        log(f"warm-up {WARMUP:.0f}s")
        loop.run_until_complete(soak.phase(WARMUP))
        base = at_rest(b)
        log(f"at rest after warm-up: RSS {base['rss_mb']:.1f} MB, {base['fds']} descriptors; soak {MINUTES:g} min")
        loop.run_until_complete(soak.phase(MINUTES * 60))
        final = at_rest(b)
        alive = b.gateway.poll() is None
        sampling.set()
        soak.signer_stop.set()
        loop.close()
        log(f"at rest after the soak: RSS {final['rss_mb']:.1f} MB, {final['fds']} descriptors")

        peak = max((s["rss_mb"] for s in samples), default=0)
        growth = final["rss_mb"] / base["rss_mb"] if base["rss_mb"] else 0
        unexpected = sum(soak.tally.unexpected.values())
        targets = [
            ("gateway alive at the end", "yes" if alive else "no", alive),
            ("RSS at rest ≤ 1.10 × after warm-up", f"{base['rss_mb']:.1f} → {final['rss_mb']:.1f} MB ({growth:.2f} ×)", growth <= 1.10),
            (f"descriptors at rest within {FD_SLACK} of after warm-up", f"{base['fds']} → {final['fds']}",
             final["fds"] <= base["fds"] + FD_SLACK),
            ("unexpected answers", str(unexpected), unexpected == 0),
        ]
        lines = [f"Soak: {MINUTES:g} min after a {WARMUP:.0f} s warm-up, {time.strftime('%Y-%m-%d %H:%M')}, "
                 f"{os.cpu_count()} cores, gateway {run.GATEWAY_BIN}", "",
                 "| traffic (warm-up included) | as expected | unexpected |", "|---|---:|---:|"]
        for kind in sorted(set(soak.tally.ok) | set(soak.tally.unexpected)):
            lines.append(f"| {kind} | {soak.tally.ok.get(kind, 0):,} | {soak.tally.unexpected.get(kind, 0):,} |")
        lines += ["", f"RSS peak during the soak {peak:.1f} MB; gateway CPU {samples[-1]['cpu_s'] if samples else 0:.0f} s; "
                  f"load average {min((s['load'] for s in samples), default=0):.1f}–{max((s['load'] for s in samples), default=0):.1f}", "",
                  "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in targets]
        if soak.tally.examples:
            lines += ["", "Unexpected (first 20):", ""] + [f"- {e}" for e in soak.tally.examples]
        table = "\n".join(lines)
        run.write_results(RESULTS_DIR, {
            "minutes": MINUTES, "warmup_s": WARMUP, "base": base, "final": final, "peak_rss_mb": peak,
            "tally": {"ok": soak.tally.ok, "unexpected": soak.tally.unexpected, "examples": soak.tally.examples},
            "samples": samples, "elapsed_s": time.time() - started}, table)
        log(f"done; results in {RESULTS_DIR}/last-run.{{md,json}}")
        if not all(ok for _, _, ok in targets):
            sys.exit(1)
    finally:
        b.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
