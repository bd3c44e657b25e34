"""Hosts benchmark: delivery throughput with workers on one and on two separate hosts, against
one database and one broker, every host a network namespace (tests/scaleout/lab.py).

    sudo .venv/bin/python bench/hosts_bench.py --broker redis      # or --broker rabbitmq
                                               [--pipelines 100] [--hooks 10] [--clients 4]

The lab: a db host (a PostgreSQL cluster and a Redis or RabbitMQ node of the bench's own), a
web host (gunicorn and the one beat), worker hosts worker1 and worker2 (one Celery worker
each, threads pool, concurrency 4), and in the root namespace, at the lab's gateway, the
receiver (a process of its own, answering 200 at once) and the CI clients (processes of
their own). Settings are the defaults (60 s lease, 5 s sweep), except the allowed networks.

Rows, first with worker1 alone, then with worker2 started beside it (same concurrency):

1. end to end: the clients report --pipelines pipelines, each a job going pending, running,
   success, through GitLab's commit status API on the web host; every event is delivered to
   --hooks hooks. Seconds run from the first status sent to the last delivery's arrival.
2. drain: the workers stop consuming (``celery control cancel_consumer``), the clients write
   the same outbox through the API, the workers consume again; seconds run from the first
   attempt logged to the last delivery finished (the database's clock).
3. baseline: one process on worker1 posting an event's body to the receiver in a loop over
   one urllib3 keep-alive connection: "just HTTP" between these hosts on this machine.

For each row: deliveries/s, deliveries the receiver got twice (by Idempotency-Key: must be 0)
and attempts it got twice (by X-Gitlab-Webhook-UUID), each worker host's share, and the CPU
each part spent per delivery (psutil over each namespace's processes, children included):
the db host's PostgreSQL and its broker apart, each worker host, the web host, the clients,
the receiver, and whatever else the machine ran meanwhile. Needs root (network namespaces),
PostgreSQL's server binaries and, for --broker rabbitmq, RabbitMQ's server.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKER_CONCURRENCY = 4  # the lab's workers: tests/hooks/test_e2e.py's Workers
ROLES = ("postgres", "broker", "worker1", "worker2", "web", "clients", "receiver", "other")
# The settings' own defaults where the lab's test shortens them: the bench measures a
# deployment as shipped (a lease no batch outlives, so a delivery sent twice is a fault).
SHIPPED = {
    "HOOKS_CLAIM_LEASE_SECONDS": "60",
    "HOOKS_SWEEP_INTERVAL_SECONDS": "5",
    "HOOKS_TIMEOUT_SECONDS": "10",
    "HOOKS_CONNECT_TIMEOUT_SECONDS": "3",
    "PIPEHOOK_BROKER_TIMEOUT_SECONDS": "3",
    "SQLITE_BUSY_TIMEOUT_SECONDS": "5",
}


# --- The receiver: its own process, answers 200 at once, logs every request --------------------


def run_receiver(host: str, ports: multiprocessing.Queue, log_path: str) -> None:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = self.headers.get("Idempotency-Key", "-")
            attempt = self.headers.get("X-Gitlab-Webhook-UUID", "-")
            log.write(f"{self.path} {key} {attempt} {self.client_address[0]} {time.time()}\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    ports.put(server.server_address[1])
    server.serve_forever()


def arrivals(log_path: Path, tag: str) -> list[tuple[str, str, str, float]]:
    """(Idempotency-Key, attempt UUID, sender's address, when) of the round tagged ``tag``."""
    rows = []
    for line in log_path.read_text().splitlines():
        path, key, attempt, sender, at = line.split()
        if f"round={tag}" in path:
            rows.append((key, attempt, sender, float(at)))
    return rows


# --- The CI clients: processes of their own, one keep-alive session each -----------------------


def run_client(base: str, token: str, project: int, shas: list[str], out) -> None:
    import requests

    accepted = 0
    with requests.Session() as session:
        session.headers["PRIVATE-TOKEN"] = token
        for state in ("pending", "running", "success"):
            for sha in shas:
                while True:
                    answer = session.post(
                        f"{base}/api/v4/projects/{project}/statuses/{sha}",
                        data={"state": state, "name": "build", "ref": "main"},
                        timeout=30,
                    )
                    if answer.status_code != 503:
                        break
                    time.sleep(0.3)
                if answer.status_code != 201:
                    raise SystemExit(f"{state} for {sha}: {answer.status_code} {answer.text}")
                accepted += 1
    out.put((accepted, time.process_time()))


def report_statuses(base: str, token: str, project: int, pipelines: int, clients: int) -> dict:
    """Every pipeline's three statuses, the pipelines split between ``clients`` processes."""
    shas = [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(pipelines)]
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    processes = [
        context.Process(target=run_client, args=(base, token, project, shas[n::clients], out))
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        if process.exitcode != 0:
            raise SystemExit(f"a client failed (exit {process.exitcode})")
    return {"accepted": sum(n for n, _ in results), "cpu": sum(cpu for _, cpu in results)}


# --- The baseline: one process on a worker host, one urllib3 keep-alive connection -------------


def baseline_loop(url: str, count: int, body_path: str) -> None:
    import urllib3

    body = Path(body_path).read_bytes()
    parts = urlsplit(url)
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=1, block=True)
    path = f"{parts.path}?{parts.query}"
    headers = {"Content-Type": "application/json"}
    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(count):
        answer = pool.urlopen("POST", path, body=body, headers=headers, retries=False)
        if answer.status != 200:
            raise SystemExit(f"the receiver answered {answer.status}")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu}))


# --- CPU, per part of the deployment -------------------------------------------------------------


def process_cpu(pids) -> float:
    """User + system seconds of these processes, with their reaped children's (PostgreSQL's
    backends and gunicorn's workers come and go; their time stays with their parent)."""
    import psutil

    total = 0.0
    for pid in set(pids):
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue  # gone meanwhile: its time is with its parent now
        total += times.user + times.system + times.children_user + times.children_system
    return total


def children_cpu() -> float:
    """CPU seconds of this process's finished commands (``celery control``)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    import psutil

    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class Meter:
    """CPU seconds by part: reads every part's processes at once."""

    def __init__(self, bench: HostsBench):
        self.bench = bench

    def read(self) -> dict[str, float]:
        import psutil

        bench = self.bench
        postmaster = int((bench.cluster.data / "postmaster.pid").read_text().split()[0])
        postgres = {postmaster} | {p.pid for p in psutil.Process(postmaster).children(True)}
        parts = {
            "postgres": process_cpu(postgres),
            "broker": process_cpu(set(bench.db_host.pids()) - postgres),
            "web": process_cpu(bench.web_host.pids()),
            "receiver": process_cpu([bench.receiver.pid]),
        }
        for host in bench.worker_hosts:
            parts[host.name] = process_cpu(host.pids())
        parts["machine"] = machine_busy()
        return parts

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        used = {part: after[part] - before[part] for part in before}
        machine = used.pop("machine")
        used["other"] = max(0.0, machine - sum(used.values()))
        return used


# --- The deployment on the lab's hosts -----------------------------------------------------------


class HostsBench:
    def __init__(self, args: argparse.Namespace):
        from tests.scaleout.lab import Lab

        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pipehook-hosts-bench-"))
        self.lab = Lab()
        self.rounds = 0

    def start(self) -> None:
        from tests.faults.harness import (
            SERVICE_ENV,
            Ledger,
            PostgresCluster,
            WebServer,
            create_admin_token,
            manage,
            postgres_binaries,
            service_env,
        )
        from tests.hooks.test_e2e import Workers
        from tests.scaleout.lab import start_beat, start_broker

        lab = self.lab.start()
        self.db_host, self.web_host = lab.add_host("db"), lab.add_host("web")
        self.worker_hosts = [lab.add_host("worker1"), lab.add_host("worker2")]
        print(f"lab {lab.subnet}: db, web, worker1, worker2; starting…", flush=True)
        self.cluster = PostgresCluster(
            postgres_binaries(),
            host=self.db_host.address,
            trusted=lab.subnet,
            run_in=self.db_host.run_in,
        )
        self.cluster.init()
        self.cluster.start()
        self.broker = start_broker(self.args.broker, self.db_host, self.tmp / "broker")
        database = self.cluster.create_database("pipehook")
        self.queue = f"pipehook-hosts-bench-{uuid.uuid4().hex[:12]}"
        settings = SHIPPED | {
            "HOOKS_ALLOWED_NETWORKS": lab.subnet,
            "ALLOWED_HOSTS": self.web_host.address,
        }
        self.env = service_env(database, self.broker.url, self.queue, self.tmp / "web-var")
        self.env |= settings
        manage(self.env, "migrate", "-v0")
        self.token = create_admin_token(self.env)
        self.web = WebServer(
            self.env, self.tmp, host=self.web_host.address, run_in=self.web_host.run_in
        )
        self.workers = Workers(
            self.broker.url,
            self.queue,
            self.tmp,
            database=database,
            env=SERVICE_ENV | settings,
            beat=False,
        )
        start_beat(self.env, self.web_host, self.tmp)
        self.web.start()
        self.receiver_log = self.tmp / "arrivals.log"
        ports: multiprocessing.Queue = multiprocessing.Queue()
        self.receiver = multiprocessing.Process(
            target=run_receiver, args=(lab.gateway, ports, str(self.receiver_log)), daemon=True
        )
        self.receiver.start()
        self.receiver_url = f"http://{lab.gateway}:{ports.get(timeout=10)}/hook"
        self.ledger = Ledger(database)
        self.meter = Meter(self)

    def stop(self) -> None:
        """Everything on the hosts goes with the lab (SIGKILL); the cluster's files too."""
        if getattr(self, "receiver", None) is not None:
            self.receiver.terminate()
        if getattr(self, "cluster", None) is not None:
            self.cluster.remove()
        self.lab.remove()

    def add_worker(self) -> None:
        host = self.worker_hosts[len(self.workers.processes)]
        self.workers.start(run_in=host.run_in)
        self.wait_for_workers()

    def celery(self, *command: str) -> tuple[int, str]:
        """A ``celery`` remote command to every worker: how many answered, and what."""
        done = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "config", *command, "--timeout", "3"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout.count("-> "), done.stdout + done.stderr

    def control(self, command: str) -> None:
        """``celery control`` on the queue, to every worker; each must answer."""
        answered, output = self.celery("control", command, self.queue)
        if answered < len(self.workers.processes):
            raise SystemExit(f"celery control {command}: {output}")

    def wait_for_workers(self) -> None:
        deadline = time.monotonic() + 120
        while (answered := self.celery("inspect", "ping"))[0] < len(self.workers.processes):
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not answer: {answered[1]}\n{self.workers.logs()}")

    # -- rounds --

    def new_project(self, tag: str) -> int:
        import requests

        def call(path: str, body: dict) -> dict:
            answer = requests.post(
                f"{self.web.url}/api/v4{path}",
                json=body,
                headers={"PRIVATE-TOKEN": self.token},
                timeout=30,
            )
            if answer.status_code != 201:
                raise SystemExit(f"{path}: {answer.status_code} {answer.text}")
            return answer.json()

        project = call("/projects", {"name": f"Bench {tag}"})["id"]
        for number in range(1, self.args.hooks + 1):
            url = f"{self.receiver_url}?round={tag}&hook={number}"
            call(f"/projects/{project}/hooks", {"url": url, "pipeline_events": True})
        return project

    def deliveries(self, project: int) -> Counter:
        return Counter(
            dict(
                self.ledger.rows(
                    "SELECT d.status, COUNT(*) FROM hooks_delivery d "
                    "JOIN hooks_hook h ON h.id = d.hook_id "
                    f"WHERE h.project_id = {int(project)} GROUP BY d.status"
                )
            )
        )

    def wait_delivered(self, project: int, tag: str, expected: int) -> None:
        """Until the receiver got every delivery, then the database recorded each: the log
        file is watched, not the database, whose every query would count as its CPU."""
        deadline = time.monotonic() + 300
        while len({key for key, *_ in arrivals(self.receiver_log, tag)}) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {expected} deliveries\n{self.logs()}")
            time.sleep(0.05)
        while (done := self.deliveries(project)["succeeded"]) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {done} of {expected} deliveries recorded")
            time.sleep(0.2)

    def logs(self) -> str:
        return f"--- web ---\n{self.web.logs()}\n--- workers ---\n{self.workers.logs()}"

    def round(self, kind: str, pipelines: int) -> dict:
        """One round of ``kind`` ("end to end" or "drain"), in a project of its own."""
        self.rounds += 1
        tag = f"r{self.rounds}"
        project = self.new_project(tag)
        base, clients = self.web.url, self.args.clients
        other_work = 0.0  # this process's own commands while measuring: not the deployment's
        if kind == "drain":
            self.control("cancel_consumer")
            sent = report_statuses(base, self.token, project, pipelines, clients)
            expected = sum(self.deliveries(project).values())
            before = self.meter.read()
            command_cpu = children_cpu()
            self.control("add_consumer")
            other_work = children_cpu() - command_cpu
        else:
            before = self.meter.read()
            started = time.time()
            sent = report_statuses(base, self.token, project, pipelines, clients)
            expected = sum(self.deliveries(project).values())
        self.wait_delivered(project, tag, expected)
        used = Meter.spent(before, self.meter.read())
        used["other"] = max(0.0, used["other"] - other_work)
        got = arrivals(self.receiver_log, tag)
        events = dict(
            self.ledger.rows(
                "SELECT status, COUNT(*) FROM hooks_event "
                f"WHERE project_id = {int(project)} GROUP BY status"
            )
        )
        if kind == "drain":
            first, last = self.ledger.rows(
                "SELECT MIN(a.created_at), MAX(d.finished_at) FROM hooks_delivery d "
                "JOIN hooks_deliveryattempt a ON a.delivery_id = d.id "
                f"JOIN hooks_hook h ON h.id = d.hook_id WHERE h.project_id = {int(project)}"
            )[0]
            seconds = (last - first).total_seconds()
        else:
            used["clients"] = sent["cpu"]
            seconds = max(at for *_, at in got) - started
        return self.figures(kind, expected, seconds, got, used) | {"events": events}

    def figures(self, kind: str, expected: int, seconds: float, got, used) -> dict:
        # The baseline loop's requests carry neither header: nothing to count there.
        by_key = Counter(key for key, *_ in got if key != "-")
        by_attempt = Counter(attempt for _, attempt, *_ in got if attempt != "-")
        by_host = Counter(sender for *_, sender, _ in got)
        address_of = {host.address: host.name for host in self.worker_hosts}
        return {
            "row": kind,
            "worker_hosts": len(self.workers.processes),
            "deliveries": expected,
            "received": len(got),
            "seconds": seconds,
            "per_second": expected / seconds,
            "deliveries_twice": sum(n - 1 for n in by_key.values()),
            "attempts_twice": sum(n - 1 for n in by_attempt.values()),
            "share": {address_of.get(a, a): n / len(got) for a, n in sorted(by_host.items())},
            "cpu_ms": {part: used.get(part, 0.0) * 1000 / expected for part in ROLES},
        }

    def baseline(self, count: int) -> dict:
        tag = "baseline"
        body = self.ledger.rows("SELECT body FROM hooks_event ORDER BY id LIMIT 1")[0][0]
        body_path = self.tmp / "event.json"
        body_path.write_text(body if isinstance(body, str) else json.dumps(body))
        host = self.worker_hosts[0]
        before = self.meter.read()
        done = subprocess.run(
            [*host.run_in, sys.executable, __file__, "baseline-loop"]
            + [f"{self.receiver_url}?round={tag}", str(count), str(body_path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        used = Meter.spent(before, self.meter.read())
        loop = json.loads(done.stdout)
        used[host.name] = loop["cpu"]  # the loop's own, not the idle worker's
        used["other"] = max(0.0, used["other"] - loop["cpu"])
        got = arrivals(self.receiver_log, tag)
        figures = self.figures("baseline loop", count, loop["seconds"], got, used)
        figures["worker_hosts"] = 1
        return figures


# --- The report ----------------------------------------------------------------------------------


def table(results: list[dict]) -> str:
    head = (
        "| row | worker hosts | deliveries | seconds | deliveries/s | sent twice "
        "(deliveries / attempts) | share worker1 / worker2 | CPU ms per delivery: "
        + " | ".join(ROLES)
        + " |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---|" + "---:|" * len(ROLES)]
    for r in results:
        share = " / ".join(f"{r['share'].get(name, 0):.0%}" for name in ("worker1", "worker2"))
        cpu = " | ".join(f"{r['cpu_ms'][part]:.2f}" for part in ROLES)
        twice = (
            "–"
            if r["row"] == "baseline loop"
            else f"{r['deliveries_twice']} / {r['attempts_twice']}"
        )
        lines.append(
            f"| {r['row']} | {r['worker_hosts']} | {r['deliveries']} | {r['seconds']:.2f} | "
            f"{r['per_second']:.0f} | {twice} | "
            f"{share} | {cpu} |"
        )
    return "\n".join(lines)


def one_core_carries(results: list[dict]) -> str:
    """Deliveries/s one core of each part would carry at the CPU it spent per delivery here:
    on machines of their own, the smallest of these is where throughput stops."""
    lines = [
        "| row | worker hosts | per worker process | PostgreSQL | broker | web (API, beat) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["row"] == "baseline loop":
            continue
        cpu, share = r["cpu_ms"], r["share"]
        # A worker process holds one core at most (the GIL): its CPU per delivery it sent.
        per_worker = [cpu[name] / share[name] for name in ("worker1", "worker2") if share.get(name)]
        worker = 1000 / max(per_worker)
        parts = (
            ("postgres", "broker", "web") if r["row"] == "end to end" else ("postgres", "broker")
        )
        cells = [f"{1000 / cpu[p]:.0f}" if cpu[p] else "–" for p in parts]
        cells += ["–"] * (3 - len(cells))  # the drain's web only runs the beat
        lines.append(f"| {r['row']} | {r['worker_hosts']} | {worker:.0f} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["baseline-loop"]:  # run on a worker host by the bench itself
        url, count, body = sys.argv[2:5]
        baseline_loop(url, int(count), body)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    parser.add_argument("--pipelines", type=int, default=100, help="pipelines per round")
    parser.add_argument("--hooks", type=int, default=10, help="hooks per project")
    parser.add_argument("--clients", type=int, default=4, help="CI client processes")
    parser.add_argument("--baseline", type=int, default=2000, help="requests in the loop")
    parser.add_argument("--quick", action="store_true", help="small rounds, to try it out")
    args = parser.parse_args()
    # The lab's helpers live with the suite's harness, which loads the product's models.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("PIPEHOOK_VAR_DIR", tempfile.mkdtemp(prefix="pipehook-hosts-var-"))
    import django

    django.setup()
    from tests.scaleout.lab import missing

    if why := missing(args.broker):
        raise SystemExit(f"cannot run: {why}")
    pipelines = 20 if args.quick else args.pipelines
    load_before, clock = load_average(), time.monotonic()
    bench = HostsBench(args)
    results: list[dict] = []
    try:
        bench.start()
        for hosts in (1, 2):
            bench.add_worker()
            print(f"{hosts} worker host(s): warming up…", flush=True)
            bench.round("end to end", 10)
            for kind in ("end to end", "drain"):
                results.append(bench.round(kind, pipelines))
                r = results[-1]
                print(f"  {kind}: {r['per_second']:.0f} deliveries/s", flush=True)
        print("baseline loop from worker1…", flush=True)
        results.append(bench.baseline(400 if args.quick else args.baseline))
    finally:
        bench.stop()
    print()
    print(
        f"broker: {args.broker}; a round: {pipelines} pipelines x 3 statuses, every pipeline "
        f"event to {args.hooks} hooks; {args.clients} clients; worker "
        f"concurrency {WORKER_CONCURRENCY} (threads); cores: {os.cpu_count()}; load average "
        f"before: {load_before}, after: {load_average()}; "
        f"{time.monotonic() - clock:.0f} s in all"
    )
    print(table(results))
    print()
    print(one_core_carries(results))
    print()
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
