"""Separate hosts on one machine: a network namespace per host, each with a veth pair to a
bridge in the root namespace, on a /24 of its own in ``NETWORKS`` (10.200.0.0/16).

The root namespace is the lab's gateway (``.1``): the test itself, its HTTP receiver and its
CI client live there and reach every host through the bridge, as an office reaches a data
centre. Each host has its own loopback, its own addresses and its own routing: taking its
interface down cuts it off from every other host, and from nothing else.

Every name carries a run id, so runs at the same time (or one that crashed before cleaning
up) never meet. ``Lab.remove`` kills whatever still runs in the namespaces and deletes them
and the bridge; the fixture calls it however the test ended.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass

# Every lab's subnet is in here: what the tests' socket guard lets them reach.
NETWORKS = "10.200.0.0/16"


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    name: str
    namespace: str
    address: str

    @property
    def run_in(self) -> list[str]:
        """The prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.namespace]

    def cut(self) -> None:
        """Its interface down: nothing goes in or out, and it cannot tell anyone."""
        ip("netns", "exec", self.namespace, "ip", "link", "set", "eth0", "down")

    def pids(self) -> list[int]:
        done = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, timeout=30
        )
        return [int(pid) for pid in done.stdout.split()]

    def kill_all(self) -> None:
        """SIGKILL every process left on this host (all of them started by the test)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Lab:
    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:5]
        prefix = f"10.200.{random.randint(0, 255)}"
        self.subnet = f"{prefix}.0/24"
        self.gateway = f"{prefix}.1"  # the root namespace: the test, its receiver and client
        self._prefix = prefix
        self.bridge = f"phb{self.run}"
        self.hosts: list[Host] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why hosts cannot be made here, or None."""
        if shutil.which("ip") is None:
            return "iproute2's ip command is not installed"
        if os.geteuid() != 0:
            return "making network namespaces (ip netns add) needs root"
        probe = f"phprobe{uuid.uuid4().hex[:6]}"
        try:
            ip("netns", "add", probe)
            ip("link", "add", f"{probe[:11]}b", "type", "bridge")
            ip("link", "del", f"{probe[:11]}b")
        except subprocess.CalledProcessError as error:
            return f"network namespaces or bridges cannot be made here: {error.stderr.strip()}"
        finally:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return None

    def start(self) -> Lab:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        number = len(self.hosts) + 2
        host = Host(name, f"pipehook-{self.run}-{name}", f"{self._prefix}.{number}")
        outside, inside = f"ph{self.run}{number}", f"ph{self.run}{number}i"
        ip("netns", "add", host.namespace)
        self.hosts.append(host)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", host.namespace)
        ip("link", "set", outside, "master", self.bridge, "up")
        on_host = ["netns", "exec", host.namespace, "ip"]
        ip(*on_host, "link", "set", inside, "name", "eth0")
        ip(*on_host, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip(*on_host, "link", "set", "eth0", "up")
        ip(*on_host, "link", "set", "lo", "up")  # its own 127.0.0.1 (epmd, rabbitmqctl)
        ip(*on_host, "route", "add", "default", "via", self.gateway)
        return host

    def remove(self) -> None:
        for number, host in enumerate(self.hosts, start=2):
            host.kill_all()
            # A namespace outlives its name while sockets of its own still retransmit to a
            # host that was cut off: deleting the veth takes both its ends away at once.
            subprocess.run(["ip", "link", "del", f"ph{self.run}{number}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
