"""Load test of ``facelens serve`` on loopback: N concurrent clients, a bounded request count and time.

Starts a server in a subprocess (or uses ``--url`` of a running one; only loopback addresses are accepted), then
POSTs a small image to ``/v1/analyze`` from ``--clients`` concurrent clients until ``--requests`` have been sent or
``--max-seconds`` have passed. Prints requests/s, latency percentiles, refusals (503, the only acceptable
non-200 answer: the server's concurrency limit at work) and other errors, and the server's resident memory before and
after. Needs the [serve] extra (to start a server); the clients use only the standard library.

Example:
    python benchmarks/loadtest.py --clients 50 --requests 2000

"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "facelens" / "assets" / "astronaut.jpg"
SERVER_CODE = (
    "import argparse, sys; from facelens.serve.cli import register; p = argparse.ArgumentParser(); "
    "register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


@dataclass
class Tally:
    """What the clients saw."""

    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    ok: int = 0
    refused_503: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        """Count a failed request."""
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


@dataclass(frozen=True)
class Report:
    """The numbers of one run."""

    clients: int
    requests_sent: int
    ok: int
    refused_503: int
    errors: int
    error_kinds: dict[str, int]
    seconds: float
    requests_per_s: float
    ok_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    server_p50_ms: float
    server_p95_ms: float
    image_bytes: int
    server_rss_before_mb: float | None
    server_rss_after_mb: float | None
    cpu_count: int | None
    load_average_before: tuple[float, float, float] | None


def small_image(side: int = 256) -> bytes:
    """The sample portrait resized to ``side`` x ``side``, as JPEG bytes (one face)."""
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(SAMPLE) as im:
        im.convert("RGB").resize((side, side)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def require_loopback(url: str) -> None:
    """Refuse any target that is not a loopback address (this tool must never load someone else's server)."""
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"error: refusing to load-test {host!r}: only loopback targets (127.0.0.1, ::1) are allowed")


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process in MiB (Linux ``/proc``), or ``None``."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 if empty)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


class Connection:
    """A minimal keep-alive HTTP/1.1 client connection (cheap on CPU, so the clients leave the cores to the server).

    Args:
        host: Server address.
        port: Server port.

    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes) -> tuple[int, dict[str, str]]:
        """Send one request; returns the status and the headers (the body is read and dropped).

        Raises:
            ConnectionError: If the server closed the connection before answering.

        """
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            self.close()
            raise ConnectionError("connection closed before an answer")
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status_line.split()[1]), headers


async def run_clients(
    url: str,
    image: bytes,
    clients: int,
    requests: int,
    max_seconds: float,
    backoff_s: float | None,
    api_key: str | None,
) -> tuple[Tally, float, int]:
    """Run the clients, each on its own keep-alive connection; returns the tally, seconds and requests sent."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    key = f"X-API-Key: {api_key}\r\n" if api_key else ""
    head = (
        f"POST /v1/analyze HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: image/jpeg\r\n{key}"
        f"Content-Length: {len(image)}\r\n\r\n"
    ).encode()
    tally = Tally()
    sent = 0
    deadline = time.monotonic() + max_seconds

    async def client() -> None:
        nonlocal sent
        conn = Connection(host, port)
        try:
            while sent < requests and time.monotonic() < deadline:
                sent += 1
                t0 = time.perf_counter()
                try:
                    fresh = conn.writer is None
                    try:
                        status, headers = await conn.request(head, image)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        if fresh:
                            raise
                        conn.close()  # a kept-alive connection the server had closed: retry once on a new one
                        status, headers = await conn.request(head, image)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    conn.close()
                    tally.error(type(exc).__name__)
                    continue
                ms = (time.perf_counter() - t0) * 1000
                if status == 200:
                    tally.ok += 1
                    tally.latencies_ms.append(ms)
                    timing = headers.get("server-timing", "")
                    if "dur=" in timing:
                        tally.server_ms.append(float(timing.rsplit("dur=", 1)[1]))
                elif status == 503:
                    tally.refused_503 += 1
                    await asyncio.sleep(backoff_s if backoff_s is not None else retry_after(headers))
                else:
                    tally.error(f"HTTP {status}")
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return tally, time.perf_counter() - t0, sent


def retry_after(headers: dict[str, str]) -> float:
    """Seconds the server asked a refused client to wait (``Retry-After``; 1 s if absent or a date)."""
    try:
        return max(0.0, float(headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def http_status(url: str, body: bytes | None = None, api_key: str | None = None, timeout: float = 60) -> int:
    """Status of a GET (or of a POST of ``body`` as image/jpeg) with the standard library."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "image/jpeg"} if body is not None else {}
    if api_key:
        headers["X-API-Key"] = api_key
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only, checked
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``facelens serve`` on a free loopback port; returns the process and its URL once ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", SERVER_CODE, "serve", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if args.server_threads:
        cmd += ["--workers-threads", str(args.server_threads)]
    if args.max_concurrency:
        cmd += ["--max-concurrency", str(args.max_concurrency)]
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with {proc.returncode}")
        try:
            if http_status(url + "/readyz", timeout=2) == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("error: the server did not become ready in 120 s")


def run(args: argparse.Namespace) -> Report:
    """Run one load test as configured by ``args``."""
    image = Path(args.image).read_bytes() if args.image else small_image(args.side)
    proc = None
    pid = args.server_pid
    if args.url:
        require_loopback(args.url)
        url = args.url.rstrip("/")
    else:
        proc, url = start_server(args)
        pid = proc.pid
    try:
        warm = http_status(url + "/v1/analyze", image, args.api_key)
        if warm != 200:
            raise SystemExit(f"error: warm-up request failed with HTTP {warm}")
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        before = rss_mb(pid)
        tally, seconds, sent = asyncio.run(
            run_clients(url, image, args.clients, args.requests, args.max_seconds, args.backoff, args.api_key)
        )
        after = rss_mb(pid)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    lat = sorted(tally.latencies_ms)
    server = sorted(tally.server_ms)
    return Report(
        clients=args.clients,
        requests_sent=sent,
        ok=tally.ok,
        refused_503=tally.refused_503,
        errors=tally.errors,
        error_kinds=tally.error_kinds,
        seconds=round(seconds, 2),
        requests_per_s=round(sent / seconds, 1) if seconds else 0.0,
        ok_per_s=round(tally.ok / seconds, 1) if seconds else 0.0,
        p50_ms=round(percentile(lat, 50), 1),
        p95_ms=round(percentile(lat, 95), 1),
        p99_ms=round(percentile(lat, 99), 1),
        max_ms=round(lat[-1], 1) if lat else 0.0,
        server_p50_ms=round(percentile(server, 50), 1),
        server_p95_ms=round(percentile(server, 95), 1),
        image_bytes=len(image),
        server_rss_before_mb=round(before, 1) if before is not None else None,
        server_rss_after_mb=round(after, 1) if after is not None else None,
        cpu_count=os.cpu_count(),
        load_average_before=tuple(round(x, 2) for x in load) if load else None,  # type: ignore[arg-type]
    )


def format_report(r: Report) -> str:
    """Human-readable summary."""
    rss = (
        f"{r.server_rss_before_mb:.1f} MiB -> {r.server_rss_after_mb:.1f} MiB"
        if r.server_rss_before_mb is not None and r.server_rss_after_mb is not None
        else "n/a"
    )
    lines = [
        f"clients            {r.clients}",
        f"requests sent      {r.requests_sent} in {r.seconds:.2f} s ({r.image_bytes:,}-byte JPEG)",
        f"requests/s         {r.requests_per_s:.1f} (answered 200: {r.ok_per_s:.1f}/s)",
        f"latency of 200s    p50 {r.p50_ms:.1f} ms  p95 {r.p95_ms:.1f} ms  p99 {r.p99_ms:.1f} ms"
        f"  max {r.max_ms:.1f} ms",
        f"in-server time     p50 {r.server_p50_ms:.1f} ms  p95 {r.server_p95_ms:.1f} ms (pool queue + decode + "
        "analysis, from Server-Timing)",
        f"200 OK             {r.ok}",
        f"503 refused        {r.refused_503} (the concurrency limit at work; each client then waited and went on)",
        f"errors             {r.errors}" + (f" {r.error_kinds}" if r.error_kinds else ""),
        f"server RSS         {rss}",
        f"machine            {r.cpu_count} CPUs, load average before {r.load_average_before}, "
        f"Python {platform.python_version()}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server on loopback (default: start one in a subprocess)")
    p.add_argument("--server-pid", type=int, help="with --url: the server's PID, to report its memory")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--requests", type=int, default=2000, help="requests in all (default 2000)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long (default 600)")
    p.add_argument("--image", help="image file to send (default: the sample portrait at --side px)")
    p.add_argument("--side", type=int, default=256, help="side of the default image in px (default 256)")
    p.add_argument(
        "--backoff", type=float, default=None, metavar="S",
        help="seconds a client waits after a 503 (default: what the server's Retry-After asks, 1 s)",
    )  # fmt: skip
    p.add_argument("--server-threads", type=int, help="spawned server: --workers-threads")
    p.add_argument("--max-concurrency", type=int, help="spawned server: --max-concurrency")
    p.add_argument("--api-key", help="API key to send")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the load test; returns 1 if any request failed other than by a 503 refusal."""
    args = build_parser().parse_args(argv)
    if args.clients < 1 or args.requests < 1:
        print("error: --clients and --requests must be >= 1", file=sys.stderr)
        return 2
    report = run(args)
    print(json.dumps(asdict(report), indent=2) if args.json else format_report(report))
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
