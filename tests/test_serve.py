"""`make run`'s last step, `manage.py serve`, on the embedded defaults: first start prints the
admin password and an API token, the web answers, a child that dies is started again, and
SIGINT stops every child process."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pipelines.management.commands.serve import Child, stop_children

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_defaults_env() -> dict[str, str]:
    """This environment less what points the test run elsewhere: a deployment started with it
    runs on production's settings and the embedded defaults."""
    test_only = (
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "PIPEHOOK_TEST_DB",
        "DJANGO_SETTINGS_MODULE",  # pytest's tests.settings
    )
    return {k: v for k, v in os.environ.items() if k not in test_only}


@pytest.fixture
def embedded_env(tmp_path):
    env = embedded_defaults_env()
    env["PIPEHOOK_VAR_DIR"] = str(tmp_path / "var")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return env


def child_pids(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def kill_leftovers(proc: subprocess.Popen, children: set[int]) -> None:
    """Children run in their own sessions: if a test failed half-way, stop them too."""
    for pid in child_pids(proc.pid) | children:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()


def start_serve(
    env: dict, port: int, *, stderr=subprocess.DEVNULL, stdout=subprocess.PIPE, processes=1
) -> subprocess.Popen:
    """`manage.py serve` as `make run` starts it, its output readable line by line."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
        + ["--web-processes", str(processes), "--worker-processes", str(processes)],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=stderr,
        text=True,
    )


def read_first_start(proc: subprocess.Popen) -> tuple[str | None, list[str]]:
    """The API token `serve` prints on first start, and every line up to it."""
    token = None
    output = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and token is None:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith("API token: "):
            token = line.split(": ", 1)[1].strip()
    return token, output


def wait_until_up(base: str) -> None:
    for _ in range(100):
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)


def test_serve_first_start_prints_token_and_stops_cleanly(embedded_env):
    port = free_port()
    proc = start_serve(embedded_env, port)
    children: set[int] = set()
    try:
        token, output = read_first_start(proc)
        assert token, "".join(output)
        assert any("user root  password" in line for line in output)

        base = f"http://127.0.0.1:{port}"
        wait_until_up(base)
        assert requests.get(f"{base}/admin/login/", timeout=5).status_code == 200
        projects = requests.get(
            f"{base}/api/v4/projects", headers={"PRIVATE-TOKEN": token}, timeout=5
        )
        assert projects.status_code == 200, projects.text
        anonymous = requests.get(f"{base}/api/v4/projects", timeout=5)
        assert anonymous.status_code == 401

        children = child_pids(proc.pid)
        assert len(children) == 4  # redis, web, worker, beat
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not [pid for pid in children if alive(pid)]
    finally:
        kill_leftovers(proc, children)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def child_running(parent: int, marker: str) -> int | None:
    """The pid of the live child of ``parent`` whose command line contains ``marker``."""
    for pid in child_pids(parent):
        if marker in command_line(pid) and alive(pid):
            return pid
    return None


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_serve_starts_a_dead_child_again_and_keeps_the_others(embedded_env, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    errors = tmp_path / "serve.err"
    with open(errors, "wb") as stderr:
        proc = start_serve(embedded_env, port, stderr=stderr)
    seen: set[int] = set()
    try:
        wait_for(lambda: healthy(base), "the web server")
        worker = wait_for(lambda: child_running(proc.pid, " worker "), "the worker")
        web = child_running(proc.pid, "config.webserver")
        redis = child_running(proc.pid, "redis-server")
        beat = child_running(proc.pid, " beat ")
        assert None not in (web, redis, beat), [command_line(p) for p in child_pids(proc.pid)]
        seen |= {worker, web, redis, beat}

        os.kill(worker, signal.SIGKILL)
        new_worker = wait_for(
            lambda: (pid := child_running(proc.pid, " worker ")) not in (None, worker) and pid,
            "the worker started again",
        )
        os.killpg(web, signal.SIGKILL)  # the web server and anything it started
        new_web = wait_for(
            lambda: (pid := child_running(proc.pid, "config.webserver")) not in (None, web) and pid,
            "the web server started again",
        )
        seen |= {new_worker, new_web}
        wait_for(lambda: healthy(base), "the web server answering again")
        assert proc.poll() is None, "serve stopped when a child died"
        # The children that did not die were left alone.
        assert child_running(proc.pid, "redis-server") == redis
        assert child_running(proc.pid, " beat ") == beat
        log = errors.read_text()
        assert "The worker process exited with code -9; starting it again in 1 s" in log
        assert "The web process exited with code -9; starting it again in 1 s" in log

        seen |= child_pids(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not [pid for pid in seen if alive(pid)]
    finally:
        kill_leftovers(proc, seen)


def test_serve_runs_several_web_and_worker_processes_and_stops_them_all(embedded_env):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_serve(embedded_env, port, stdout=subprocess.DEVNULL, processes=2)
    seen: set[int] = set()
    try:
        wait_for(lambda: healthy(base), "the web server")

        def running(marker):
            return [p for p in child_pids(proc.pid) if marker in command_line(p) and alive(p)]

        webs = wait_for(
            lambda: len(running("config.webserver")) == 2 and running("config.webserver"),
            "two web processes",
        )
        workers = wait_for(
            lambda: len(running(" worker ")) == 2 and running(" worker "), "two workers"
        )
        seen |= set(webs) | set(workers) | child_pids(proc.pid)
        # The port answers; which web process serves which connection is
        # tests/test_serve_spreading.py's to see.
        for _ in range(5):
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not [pid for pid in seen if alive(pid)]
    finally:
        kill_leftovers(proc, seen)


def processes_of(var_dir: str) -> list[int]:
    """Every live process started with this PIPEHOOK_VAR_DIR: serve's children, wherever
    they were reparented to."""
    marker = f"PIPEHOOK_VAR_DIR={var_dir}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0") and alive(int(environ.parent.name)):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("started", [1, 3])
def test_serve_stopped_while_starting_its_children_leaves_none(embedded_env, started):
    """SIGINT as the ``started``-th child is being started (1: the web after Redis, 3: the
    beat): serve stops what it started, and nothing it started outlives it."""
    port = free_port()
    proc = start_serve(embedded_env, port, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(child_pids(proc.pid)) > started, f"child {started + 1} forked")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        left = processes_of(embedded_env["PIPEHOOK_VAR_DIR"])
        assert not left, [command_line(pid) for pid in left]
    finally:
        for pid in processes_of(embedded_env["PIPEHOOK_VAR_DIR"]):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_a_child_that_ignores_sigterm_is_killed_with_its_group_after_the_grace(caplog):
    # A child that ignores SIGTERM, with a grandchild in its process group.
    stubborn = Child(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, subprocess, sys, time;"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            "subprocess.Popen([sys.executable, '-c', 'import signal, time;"
            " signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)']);"
            "print('ready', flush=True); time.sleep(300)",
        ],
    )
    polite = Child("polite", [sys.executable, "-c", "import time; time.sleep(300)"])
    for child in (stubborn, polite):
        child.start()
    wait_for(lambda: len(child_pids(stubborn.process.pid)) == 1, "the grandchild")
    [grandchild] = child_pids(stubborn.process.pid)
    try:
        started = time.monotonic()
        stop_children([stubborn, polite], grace=2)
        assert 2 <= time.monotonic() - started < 10
        assert stubborn.process.returncode == -signal.SIGKILL
        assert polite.process.returncode == -signal.SIGTERM
        wait_for(lambda: not alive(grandchild), "the grandchild gone", timeout=10)
        assert "The stubborn process (pid" in caplog.text
        assert "did not stop within 2 s of SIGTERM; killing it" in caplog.text
        assert "polite" not in caplog.text
    finally:
        for pid in (grandchild, stubborn.process.pid, polite.process.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
