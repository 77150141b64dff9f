"""wrk, the load generator: run it, read its figures.

wrk rather than a Python generator: on two cores shared with the server, a Python client would
spend as much CPU as the code it measures, and measure itself.
"""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).parent / "lua"
THREADS = 2
CONNECTIONS = 20
# wrk drops a request slower than its timeout (2 s by default) from the latency figures and
# counts it as a socket error; a long timeout keeps the slow tail in the p99, where it belongs.
TIMEOUT_SECONDS = 30

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class WrkMissingError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissingError(
            "wrk is not installed: run `sudo scripts/install-system-deps.sh` "
            "(or `sudo apt-get install -y wrk`)."
        )
    return path


def run_wrk(
    url: str, seconds: int, *, script: str | None = None, env: dict[str, str] | None = None
) -> LoadResult:
    """Closed-loop load: THREADS threads keep CONNECTIONS connections busy for `seconds`."""
    command = [
        wrk_path(),
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        f"--timeout={TIMEOUT_SECONDS}s",
        "--latency",
    ]
    if script is not None:
        command += ["-s", str(LUA / script)]
    completed = subprocess.run(  # noqa: S603 - a fixed command line of our own
        [*command, url],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=seconds + TIMEOUT_SECONDS + 10,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse(completed.stdout)


def parse(output: str) -> LoadResult:
    rate, total = _RATE.search(output), _TOTAL.search(output)
    percentiles = {p: float(v) * _UNIT_MS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    if rate is None or total is None or set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    socket_errors = _SOCKET_ERRORS.search(output)
    return LoadResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, socket_errors.groups())) if socket_errors else 0,
    )
