"""The web UI under load (issue 13, item 12): start `img2img serve` on 127.0.0.1 with the shipped
models (checkpoints/), send CLIENTS simultaneous requests of real 256 x 256 photos with
gradio_client (one client, so one session, per simulated user, round-robin over the three
endpoints), and print what happened as a Markdown table: served / refused, p50 / p99 latency,
wall time, the server's peak RSS and the CPU.

    .venv/bin/python benchmarks/ui_load.py                      # 50 clients, the serve defaults
    .venv/bin/python benchmarks/ui_load.py --clients 100 --queue-size 64   # past the queue: some refused

Bounded on purpose: at most 200 clients, a deadline for the whole burst (--timeout), and the
server only ever listens on 127.0.0.1. Peak RSS is the server's high-water mark (VmHWM in
/proc/PID/status, Linux), read before it is stopped; latencies are from submit to result, so
they include the upload and the wait in the queue (the users connect first, untimed, then all
submit at once). Each model answers one warm-up request first (its ONNX Runtime session is
created then); those times are printed apart."""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HOST = "127.0.0.1"  # loopback only: this sends a burst of requests, never to another machine
MAX_CLIENTS = 200
ENDPOINTS = ("/style_transfer", "/colorize", "/sketch_to_photo")


def write_inputs(folder: Path, side: int) -> dict[str, Path]:
    """A real photo per endpoint, side x side: a colour photo, its grey version, its line drawing."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from img2img.data.derived import luminance, xdog

    made = {}
    for endpoint, (name, make) in zip(ENDPOINTS, [("chelsea", None), ("coffee", luminance), ("astronaut", xdog)]):
        rgb = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize((side, side), Image.Resampling.LANCZOS))
        path = folder / f"{name}_{side}.png"
        Image.fromarray(make(rgb) if make else rgb).save(path)
        made[endpoint] = path
    return made


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(port: int, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "img2img", "serve", "--host", HOST, "--port", str(port), "--models", str(args.models),
           "--queue-size", str(args.queue_size), "--concurrency", str(args.concurrency)]  # fmt: skip
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=5):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.5)


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (the peak so far) of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def user(url: str, endpoint: str, image: Path, ready: threading.Barrier, deadline: float) -> tuple[str, float]:
    """One simulated user: connect (not timed), wait until every user is connected, then send
    one request. (outcome, seconds from submit to result): outcome is served, refused (queue
    full) or the error."""
    from gradio_client import Client, handle_file

    start = time.perf_counter()
    try:
        client = Client(url, verbose=False)
        ready.wait(timeout=max(1.0, deadline - time.monotonic()))  # a user that cannot connect breaks it for all
        start = time.perf_counter()
        client.submit(handle_file(str(image)), api_name=endpoint).result(timeout=max(1.0, deadline - time.monotonic()))
        return "served", time.perf_counter() - start
    except Exception as e:  # noqa: BLE001 - every failure is counted, by kind
        kind = "refused" if "queue is full" in str(e).lower() else f"error: {type(e).__name__}: {e}"[:200]
        return kind, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q % of them at or below it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help=f"simultaneous requests (at most {MAX_CLIENTS})")
    parser.add_argument("--side", type=int, default=256, help="input images are side x side")
    parser.add_argument("--models", type=Path, default=REPO / "checkpoints")
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="deadline for the whole burst, seconds")
    args = parser.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS:
        raise SystemExit(f"--clients must be 1..{MAX_CLIENTS}")

    from img2img.devices import cpu_summary

    with tempfile.TemporaryDirectory(prefix="img2img-ui-load-") as tmp:
        inputs = write_inputs(Path(tmp), args.side)
        port = free_port()
        url = f"http://{HOST}:{port}/"
        server = start_server(port, args, Path(tmp) / "server.log")
        try:
            warm = {e: user(url, e, inputs[e], threading.Barrier(1), time.monotonic() + 300) for e in ENDPOINTS}
            for e, (outcome, seconds) in warm.items():
                if outcome != "served":
                    raise SystemExit(f"warm-up {e}: {outcome}")
            idle_rss = memory_mb(server.pid, "VmRSS")
            load = os.getloadavg()[0]
            deadline = time.monotonic() + args.timeout
            # The clock starts when the last user has connected: then all submit at once.
            started: list[float] = []
            ready = threading.Barrier(args.clients, action=lambda: started.append(time.perf_counter()))
            with ThreadPoolExecutor(args.clients) as pool:
                futures = [pool.submit(user, url, ENDPOINTS[i % 3], inputs[ENDPOINTS[i % 3]], ready, deadline)
                           for i in range(args.clients)]  # fmt: skip
                results = [f.result() for f in futures]
            wall = time.perf_counter() - started[0]
            peak = memory_mb(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(timeout=30)

    served = [s for outcome, s in results if outcome == "served"]
    refused = sum(outcome == "refused" for outcome, _ in results)
    errors = [outcome for outcome, _ in results if outcome not in ("served", "refused")]
    print(f"{args.clients} simultaneous {args.side}x{args.side} requests, round-robin over {', '.join(ENDPOINTS)}; "
          f"serve --queue-size {args.queue_size} --concurrency {args.concurrency}; "
          f"load average {load:.1f} on {os.cpu_count()} cores at the start of the burst")  # fmt: skip
    print("first request per model (creates its session): " + ", ".join(f"{e} {s:.2f} s" for e, (_, s) in warm.items()))
    print()
    print("| clients | served | refused | errors | p50 latency | p99 latency | wall time | server peak RSS | CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.clients} | {len(served)} | {refused} | {len(errors)} | {percentile(served, 50):.2f} s | "
          f"{percentile(served, 99):.2f} s | {wall:.1f} s | {peak:.0f} MB (idle after warm-up: {idle_rss:.0f} MB) | "
          f"{cpu_summary()} |")  # fmt: skip
    if served:
        print(f"\nmean service time per request (wall / served): {wall / len(served):.2f} s; "
              f"mean latency {statistics.mean(served):.2f} s")
    for e in sorted(set(errors)):
        print(f"error ({errors.count(e)}x): {e}")


if __name__ == "__main__":
    main()
