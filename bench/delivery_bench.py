"""Delivery benchmark: real Celery workers, a real broker and a real receiver on 127.0.0.1.

    .venv/bin/python bench/delivery_bench.py [--workers 2] [--pool threads] [--concurrency 2]
                                             [--repeat 3] [--only fan-out] [--quick]

Scenarios, each run in the same process tree against the same receiver:

1. fan-out: 100 pipelines x 10 hooks and 1 pipeline x 200 hooks, created in one transaction so
   every outbox row is written before the first message goes out; the (warmed-up) workers
   drain the backlog. Throughput is logged deliveries (attempt rows with a 2xx) per second,
   from the first attempt row written to the last delivery recorded as finished.
2. latency: one pipeline moved between running and success at a steady 50 events/s, one
   hook: every event is a delivery that must wait for the one before it (the strictest case
   of per-pipeline order). Latency is event row creation -> request arrival at the
   receiver, p50/p99.
3. baseline: a plain single-process loop posting the same bodies with one keep-alive
   ``requests.Session``: the ceiling of "just send HTTP" on this machine, without a queue,
   a database or a log.

Uses DATABASE_URL / REDIS_URL when set (PostgreSQL + Redis), else a fresh SQLite file and the
embedded Redis in a temporary folder. Prints Markdown tables for docs/benchmarks.md, with the
CPU time each process group spent per delivery (read from /proc: Linux only). The workers
start once and are warmed up first; each fan-out runs --repeat times and the median run is
reported, with every run's throughput.
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
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.management.embedded_redis import EmbeddedRedis  # noqa: E402 (after the path)

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


def cpu_seconds(root_pids: list[int]) -> float:
    """CPU time (user + system) of these processes and all their descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent_of: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parent_of[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    wanted = set(root_pids)
    grew = True
    while grew:
        children = {pid for pid, parent in parent_of.items() if parent in wanted} - wanted
        grew = bool(children)
        wanted |= children
    return sum(times.get(pid, 0.0) for pid in wanted)


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine spent (user, system, irq...), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


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
            # A queue of its own: a shared Redis may carry other deployments' messages.
            CELERY_TASK_DEFAULT_QUEUE=f"pipehook-bench-{uuid.uuid4().hex[:12]}",
        )
        self.queue = self.env["CELERY_TASK_DEFAULT_QUEUE"]
        self.redis: EmbeddedRedis | None = None
        self.workers: list[subprocess.Popen] = []

    # -- processes --

    def start_redis(self) -> None:
        if "REDIS_URL" in self.env or "CELERY_BROKER_URL" in self.env:
            return
        # Where the settings look for the embedded one: PIPEHOOK_VAR_DIR/redis.sock.
        self.redis = EmbeddedRedis(self.tmp)
        self.redis.start()

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
                        f"--pool={self.args.pool}",
                        f"--concurrency={self.args.concurrency}",
                        "-n",
                        f"bench{n}@%h",
                        "-l",
                        "WARNING",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "--queues",
                        self.queue,
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
        for child in self.workers:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)  # reaped, not left behind as a zombie
        if self.redis is not None:
            self.redis.stop()

    def delete_queue(self) -> None:
        from config.celery import app

        with app.connection_for_write() as broker:
            broker.default_channel.queue_delete(self.queue)

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

    def fan_out(self, pipelines: int, hooks: int, url: str) -> dict:
        """Create the pipelines in one transaction, so every outbox row exists before any
        message goes out and the running workers find a backlog at commit; then wait until
        each delivery is logged. Sender CPU counts from just before the commit to the end."""
        from django.db import transaction
        from django.db.models import Max, Min

        from hooks.models import Delivery, DeliveryAttempt
        from pipelines import services

        project = self.make_project(hooks, url)
        print(f"  {pipelines} pipeline(s) x {hooks} hooks…", flush=True)
        expected = pipelines * hooks
        attempts = DeliveryAttempt.objects.filter(hook__project=project, succeeded=True)
        worker_pids = [worker.pid for worker in self.workers]
        with transaction.atomic():
            for n in range(pipelines):
                services.create_pipeline(project, ref="main", sha=f"{n:040x}")
            worker_cpu = cpu_seconds(worker_pids)
            receiver_cpu = cpu_seconds([self.receiver_pid])
            machine_cpu = machine_busy_seconds()
        deadline = time.monotonic() + 600
        while (done := attempts.count()) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: only {done} of {expected} deliveries were made")
            time.sleep(0.05)
        worker_cpu = cpu_seconds(worker_pids) - worker_cpu
        receiver_cpu = cpu_seconds([self.receiver_pid]) - receiver_cpu
        machine_cpu = machine_busy_seconds() - machine_cpu
        first = attempts.aggregate(at=Min("created_at"))["at"]
        last = Delivery.objects.filter(hook__project=project).aggregate(at=Max("finished_at"))["at"]
        seconds = max((last - first).total_seconds(), 1e-6)
        return {
            "deliveries": expected,
            "seconds": seconds,
            "per_second": expected / seconds,
            "worker_cpu_ms": worker_cpu * 1000 / expected,
            "receiver_cpu_ms": receiver_cpu * 1000 / expected,
            # Everything: workers, receiver, database server, broker, this process, and
            # whatever else the machine was doing meanwhile.
            "machine_cpu_ms": machine_cpu * 1000 / expected,
        }

    def warm_up(self, url: str) -> None:
        """Workers fresh from start-up run cold code paths (imports, first connections): a
        small fan-out first, so the runs measure warm workers, as a deployment has."""
        print("warming up the workers…", flush=True)
        self.fan_out(5, 40, url)

    def repeated(self, runs: int, scenario, *args) -> dict:
        """Run a scenario several times; the median run by throughput, with every run's
        throughput alongside (a shared machine's other work shows up as spread)."""
        results = [scenario(*args) for _ in range(runs)]
        results.sort(key=lambda result: result["per_second"])
        median = dict(results[len(results) // 2])
        median["runs_per_second"] = [round(result["per_second"]) for result in results]
        return median

    def latency(self, url: str, arrivals_path: Path, rate: float, seconds: float) -> dict:
        from hooks.models import Event
        from pipelines import services

        project = self.make_project(1, url)
        pipeline = services.create_pipeline(project, ref="main", sha="f" * 40)
        time.sleep(1)  # its creation is delivered before the clock starts
        wall_start = time.time()
        start = time.monotonic()
        sent = 0
        # A pipeline without jobs may go from running to success and back, each a real
        # change: one event (and one delivery, in order) per move.
        statuses = ["running", "success"]
        try:
            while time.monotonic() - start < seconds:
                if not services.transition_pipeline(pipeline, statuses[sent % 2]):
                    raise SystemExit(f"moving the pipeline to {statuses[sent % 2]} changed nothing")
                sent += 1
                next_at = start + sent / rate
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            time.sleep(3)  # the last events' deliveries
        created = {
            str(event_uuid): at.timestamp()
            for event_uuid, at in Event.objects.filter(project=project).values_list(
                "uuid", "created_at"
            )
            if at.timestamp() >= wall_start
        }
        latencies = []
        for line in arrivals_path.read_text().splitlines():
            event_uuid, arrived = line.split()
            if event_uuid in created:
                latencies.append((float(arrived) - created[event_uuid]) * 1000)
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

        if not Event.objects.exists():
            self.make_project(1, url)
            from pipelines import services
            from pipelines.models import Project

            services.create_pipeline(Project.objects.last(), ref="main", sha="0" * 40)
        body = Event.objects.order_by("id").first().body.encode()
        receiver_cpu = cpu_seconds([self.receiver_pid])
        machine_cpu = machine_busy_seconds()
        own_cpu = time.process_time()
        with requests.Session() as session:
            start = time.perf_counter()
            for _ in range(count):
                session.post(
                    url, data=body, headers={"Content-Type": "application/json"}, timeout=10
                ).raise_for_status()
            seconds = time.perf_counter() - start
        return {
            "deliveries": count,
            "seconds": seconds,
            "per_second": count / seconds,
            "worker_cpu_ms": (time.process_time() - own_cpu) * 1000 / count,
            "receiver_cpu_ms": (cpu_seconds([self.receiver_pid]) - receiver_cpu) * 1000 / count,
            "machine_cpu_ms": (machine_busy_seconds() - machine_cpu) * 1000 / count,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--pool", default="threads", choices=["threads", "prefork", "solo"], help="Celery pool"
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="tasks at once per worker (threads/prefork)"
    )
    parser.add_argument("--rate", type=float, default=50.0, help="events/s in the latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fan-out (median)")
    parser.add_argument("--quick", action="store_true", help="smaller runs, to try it out")
    parser.add_argument(
        "--only",
        choices=["fan-out", "baseline", "latency"],
        action="append",
        help="run only these scenarios (repeatable); all by default",
    )
    args = parser.parse_args()
    runs = set(args.only or ["fan-out", "baseline", "latency"])

    bench = Bench(args)
    arrivals = bench.tmp / "arrivals.log"
    ports: multiprocessing.Queue = multiprocessing.Queue()
    receiver = multiprocessing.Process(
        target=run_receiver, args=(ports, str(arrivals)), daemon=True
    )
    receiver.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}/hook"
    bench.receiver_pid = receiver.pid
    results: dict[str, dict] = {}
    load_before = load_average()
    try:
        bench.start_redis()
        bench.setup_django()
        from django.db import connection

        print(f"database: {connection.vendor}; broker: {bench.env.get('REDIS_URL', 'embedded')}")
        scale = 0.2 if args.quick else 1.0
        bench.start_workers()
        bench.warm_up(url)
        if "fan-out" in runs:
            print("fan-out: 100 pipelines x 10 hooks")
            results["100 pipelines x 10 hooks"] = bench.repeated(
                args.repeat, bench.fan_out, int(100 * scale), 10, url
            )
            print("fan-out: 1 pipeline x 200 hooks")
            results["1 pipeline x 200 hooks"] = bench.repeated(
                args.repeat, bench.fan_out, 1, int(200 * scale), url
            )
        if "baseline" in runs:
            print("baseline: one process, one keep-alive session")
            results["baseline loop"] = bench.baseline(url, int(1000 * scale))
        if "latency" in runs:
            print(f"latency at {args.rate:g} events/s for {args.seconds:g} s")
            results["latency"] = bench.latency(
                url, arrivals, args.rate, args.seconds * (0.5 if args.quick else 1)
            )
        bench.stop_workers()
    finally:
        bench.stop_all()
        receiver.terminate()
        if "REDIS_URL" in bench.env or "CELERY_BROKER_URL" in bench.env:
            bench.delete_queue()  # leave a shared Redis as it was

    print()
    print(
        f"workers: {args.workers} x {args.pool} pool, concurrency {args.concurrency}; "
        f"cores: {os.cpu_count()}; load average before: {load_before}, after: {load_average()}"
    )
    print(
        "| run | deliveries | seconds | deliveries/s (median) | all runs | "
        "CPU ms/delivery: sender | receiver | whole machine |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for name in ("100 pipelines x 10 hooks", "1 pipeline x 200 hooks", "baseline loop"):
        if r := results.get(name):
            spread = ", ".join(str(n) for n in r.get("runs_per_second", [])) or "–"
            print(
                f"| {name} | {r['deliveries']} | {r['seconds']:.2f} | {r['per_second']:.0f} | "
                f"{spread} | {r['worker_cpu_ms']:.2f} | {r['receiver_cpu_ms']:.2f} | "
                f"{r['machine_cpu_ms']:.2f} |"
            )
    if lat := results.get("latency"):
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
