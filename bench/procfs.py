"""What a server's processes use, read from /proc: peak resident memory and CPU time.

The whole tree is counted (uvicorn's supervisor and its workers), and the largest process alone:
with one worker that is the server itself, with several it is the busiest worker.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    peak_tree_mb: float = 0.0
    peak_process_mb: float = 0.0
    cpu_seconds: float = 0.0  # user + system time of the tree while sampling
    # Every process of the machine while sampling (wrk, Redis, the database, anything else):
    # what the cores actually spent per request, the server's share of it included.
    machine_cpu_seconds: float = 0.0
    _peak_by_pid: dict[int, float] = field(default_factory=dict)

    def add(self, sample: dict[int, float]) -> None:
        self.peak_tree_mb = max(self.peak_tree_mb, sum(sample.values()))
        for pid, mb in sample.items():
            self._peak_by_pid[pid] = max(self._peak_by_pid.get(pid, 0.0), mb)
        self.peak_process_mb = max(self._peak_by_pid.values(), default=0.0)


@contextmanager
def sample(root_pid: int, interval_seconds: float = 0.05) -> Iterator[Usage]:
    """Samples `root_pid` and its descendants until the block ends."""
    usage = Usage()
    done = threading.Event()
    tree = _process_tree(root_pid)
    cpu_before = _cpu_seconds(tree)
    machine_before = machine_cpu_seconds()

    def loop() -> None:
        nonlocal tree
        while True:
            memory = _rss_mb(tree)
            if len(memory) < len(tree):  # a worker was replaced: look the tree up again
                tree = _process_tree(root_pid)
                memory = _rss_mb(tree)
            usage.add(memory)
            if done.wait(interval_seconds):
                return

    sampler = threading.Thread(target=loop, daemon=True)
    sampler.start()
    try:
        yield usage
    finally:
        done.set()
        sampler.join()
        usage.cpu_seconds = _cpu_seconds(tree) - cpu_before
        usage.machine_cpu_seconds = machine_cpu_seconds() - machine_before


def machine_cpu_seconds() -> float:
    """CPU time every core has spent busy since boot: /proc/stat's first line, all but idle
    and iowait (user, nice, system, irq, softirq, steal; guest time is within user)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS_PER_SECOND


def _process_tree(root_pid: int) -> list[int]:
    """`root_pid` and its descendants. Scans all of /proc (this kernel has no `children` file),
    so the samplers call it once and read only these pids afterwards."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            parents[int(entry)] = int(fields[1])
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree += children
        frontier += children
    return tree


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state on (index 0), or None once the process has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return stat.rsplit(")", 1)[1].split()


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        if (fields := _stat_fields(pid)) is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime and stime (stat fields 14, 15)
    return ticks / _TICKS_PER_SECOND


def _rss_mb(pids: list[int]) -> dict[int, float]:
    sizes: dict[int, float] = {}
    for pid in pids:
        try:
            # statm's second field: resident pages. Cheaper to read than /proc/<pid>/status.
            resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue  # it has exited
        sizes[pid] = resident_pages * _PAGE_MB
    return sizes


def tcp_ports_to(root_pid: int, remote_port: int) -> dict[int, int]:
    """The local port of each TCP connection from `root_pid`'s tree to `remote_port` on
    loopback, and the pid holding it: which worker a server sees behind a client address."""
    owners: dict[int, int] = {}  # socket inode → pid
    for pid in _process_tree(root_pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue  # it has exited
        for link in links:
            if link.startswith("socket:["):
                owners[int(link[8:-1])] = pid
    ports: dict[int, int] = {}
    for line in Path(f"/proc/{root_pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(remote.split(":")[1], 16) == remote_port and inode in owners:
            ports[int(local.split(":")[1], 16)] = owners[inode]
    return ports
