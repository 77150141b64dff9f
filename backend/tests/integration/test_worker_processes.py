"""A real deployment's shape: `uvicorn --workers 2` in a subprocess, with multiprocess metrics
(PROMETHEUS_MULTIPROC_DIR), JSON logs at DEBUG, an OpenAI-compatible provider over HTTP, and
the cache in this test process's Redis, shared by both workers as in production (with each
worker's memory alone, whether a repeated text is a hit would depend on the worker it lands on).

Two worker processes, not two apps in one process: what is under test is what the processes
share (the metric files) and what each writes (its log lines). The server starts once for the
module (two workers take seconds to import the stack); each test measures what it caused.
"""

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from app.core.config import Settings
from fakes.openai_server import OpenAICompatibleServer, openai_compatible_server
from fakes.services import free_port, server_process
from preloaded import python_m
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from worker_services import WORKERS_DB, Services

pytestmark = pytest.mark.tiers("redis-server")

PUBLIC_KEY = "workers-public-key-5d41402abc4b2a76"
OPERATOR_KEY = "workers-operator-key-7d793037a0760186"
PROVIDER_KEY = "provider-secret-key-e4da3b7fbbce2345"
KEY_HASH_SECRET = "workers-key-hash-secret-0123456789abcdef"
STARTUP_SECONDS = 90  # two workers importing the stack on a busy 2-core machine
DEADLINE_SECONDS = 20  # for what the workers do after answering: log lines, the second worker


@dataclass(frozen=True)
class Served:
    url: str
    log: Path
    provider: OpenAICompatibleServer
    # No connection is kept between requests, so that either worker may take each one.
    http: httpx.Client

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """A request on a new connection, so that either worker may take it."""
        return self.http.get(f"{self.url}{path}", **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.url}{path}", **kwargs)

    def scrape(self) -> httpx.Response:
        return self.get("/internal/metrics", headers={"Authorization": f"Bearer {OPERATOR_KEY}"})

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def records_of(self, request_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Each request id's log records, once every id has its access line (bounded wait: a
        worker writes the line just after it answered)."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            found: dict[str, list[dict[str, Any]]] = {}
            for line in self.lines():
                record = json.loads(line)
                if record.get("request_id") in request_ids:
                    found.setdefault(record["request_id"], []).append(record)
            logged = {rid for rid, records in found.items() if _access_line(records)}
            if logged == request_ids or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _access_line(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((record for record in records if record["event"] == "request"), None)


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, services: Services) -> Iterator[Served]:
    redis_url = services.redis_server_url(WORKERS_DB)
    with Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) as redis:
        redis.flushdb()  # what an earlier run left must not be a cache hit here
    folder = tmp_path_factory.mktemp("workers")
    metrics_dir = folder / "metrics"
    metrics_dir.mkdir()
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields and not name.startswith("OTEL_")
    }
    with openai_compatible_server() as provider:
        env = {
            **inherited,
            "ENVIRONMENT": "test",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'app.db'}",
            "DATABASE_AUTO_MIGRATE": "false",  # migrated once below, not by two workers at once
            "API_KEYS": PUBLIC_KEY,
            "INTERNAL_API_KEYS": OPERATOR_KEY,
            "KEY_HASH_SECRET": KEY_HASH_SECRET,
            "AI_MODEL": "openai-chat:fake-llm",
            "AI_BASE_URL": provider.base_url,
            "AI_API_KEY": PROVIDER_KEY,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "REDIS_URL": redis_url,
        }
        # Migrated once, before the workers start (forked: only its outcome is under test here).
        migrate = python_m(
            "app.cli", ["migrate"], env=env, folder=folder, log=folder / "migrate.log"
        )
        assert migrate.wait(timeout=STARTUP_SECONDS) == 0, (folder / "migrate.log").read_text()
        url = f"http://127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
        command += ["--workers", "2", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
        command += ["--log-config", str(Path(__file__).parents[2] / "app" / "log_config.json")]
        with (
            server_process(
                command,
                health_url=f"{url}/v1/health",
                folder=folder,
                env=env,
                startup_seconds=STARTUP_SECONDS,
            ),
            httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as http,
        ):
            served = Served(url, folder / "server.log", provider, http)
            _wait_for_workers(served, 2)
            yield served


def _wait_for_workers(served: Served, count: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while samples(served.scrape().text, "app_workers") != {(): float(count)}:
        if time.monotonic() > deadline:
            pytest.fail(f"{count} workers did not come up; log:\n{served.log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.mark.timeout(STARTUP_SECONDS + 60)
class TestMetricsAcrossWorkers:
    """Seam: N requests over two worker processes → their metric files → one scrape.

    Paths: OBS-03
    Real: `uvicorn --workers 2` in a subprocess on a free loopback port, once per module, with
    PROMETHEUS_MULTIPROC_DIR in tmp; SQLite migrated once; this test process's redis-server;
    requests over real HTTP.
    Faked: the AI provider (an OpenAI-compatible server on loopback).
    """

    @pytest.mark.covers("OBS-03")
    def test_requests_counted_once_whichever_worker_answers(self, served: Served):
        """Every request is in every scrape, whichever of the two workers served either.

        Integration scope: RequestContextMiddleware in two uvicorn worker processes →
        prometheus_client multiprocess files → /internal/metrics (operator key as a bearer
        token, as a Prometheus scrape config sends it) → MultiProcessCollector.
        Business impact: with a registry per process each scrape saw one worker's share at
        random, so rates and alerts were wrong by the number of workers.
        Test strategy: send /healthz requests on new connections until both workers have
        answered some (the access lines name the pid), then scrape until both workers have
        answered a scrape; count the delta of the route's counter.
        Success criteria: both workers served requests and scrapes; every scrape shows exactly
        the requests sent; one process_* series per live worker pid; app_workers 2; GC counts.
        """
        route = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
        before = samples(served.scrape().text, "http_requests_total").get(route, 0.0)
        sent: set[str] = set()
        while len(sent) < 20 or (len(self._pids(served, sent)) < 2 and len(sent) < 300):
            request_id = f"count-{len(sent)}"
            assert served.get("/healthz", headers={"X-Request-ID": request_id}).status_code == 200
            sent.add(request_id)
        request_pids = self._pids(served, sent)

        counts: list[float] = []
        scrape_pids: set[int] = set()
        while len(scrape_pids) < 2 and len(counts) < 100:
            request_id = f"scrape-{len(counts)}"
            response = served.get(
                "/internal/metrics",
                headers={"Authorization": f"Bearer {OPERATOR_KEY}", "X-Request-ID": request_id},
            )
            counts.append(samples(response.text, "http_requests_total")[route])
            scrape_pids |= self._pids(served, {request_id})
        last = served.scrape().text

        assert len(request_pids) == 2
        assert len(scrape_pids) == 2
        assert set(counts) == {before + len(sent)}
        resident = samples(last, "process_resident_memory_bytes")
        assert {dict(labels)["pid"] for labels in resident} == {str(p) for p in request_pids}
        assert samples(last, "app_workers") == {(): 2.0}
        assert samples(last, "python_gc_collections_total")[(("generation", "0"),)] > 0

    @staticmethod
    def _pids(served: Served, request_ids: set[str]) -> set[int]:
        records = served.records_of(request_ids)
        return {line["pid"] for rid in request_ids if (line := _access_line(records.get(rid, [])))}


TEXT = "Zebra-quartz-7431 herds cross the Ilmenau at dawn, then rest by the old mill."
QUESTION = "Where do the zebra-quartz-7431 herds rest?"
EMAIL = "lumen-8842@example.com"
NAME = "Orla Quentin-5519"


@pytest.mark.timeout(STARTUP_SECONDS + 60)
class TestStructuredLogs:
    """Seam: requests → every logger of two workers (ours, uvicorn's, SQLAlchemy's, the
    provider client's) → structlog's JSON renderer → the server's output.

    Paths: OBS-04
    Real: `uvicorn --workers 2` with --log-config and LOG_FORMAT=json, once per module, on a
    free loopback port; SQLite; this test process's redis-server; the server's output file.
    Faked: the AI provider (an OpenAI-compatible server on loopback, given a secret key that
    must not be logged).
    """

    @pytest.mark.covers("OBS-04")
    def test_lines_are_json_share_request_id_and_hold_no_secret(self, served: Served):
        """At DEBUG, every line is JSON, a request's lines carry its id, and nothing sent leaks.

        Integration scope: the whole stack in two worker processes, with real HTTP to an
        OpenAI-compatible provider, a registered key, a rotation, refusals and errors.
        Business impact: logs are searched by request id in an incident, and are read by more
        people than the data: a key or a user's text in them is a leak.
        Test strategy: send a text and a question with a settings key and an issued key, a
        rejected request, a wrong key, a rotation; then read the server's whole output.
        Success criteria: each line parses as JSON; the process request's lines all carry its
        id, its access line has route, status, latency, key id, model and cached, and so has a
        stream's (the same text streamed: a cache hit); no key (ours,
        issued, wrong, the provider's), text, question, email or name appears anywhere.
        """
        public = {"X-API-Key": PUBLIC_KEY}
        registered = served.post(
            "/v1/auth/register", json={"email": EMAIL, "display_name": NAME}
        ).json()
        issued = registered["api_key"]
        processed = served.post(
            "/v1/text/process",
            json={"operation": "summarize", "text": TEXT},
            headers={"Authorization": f"Bearer {issued}", "X-Request-ID": "obs-log-process"},
        )
        streamed = served.post(
            "/v1/text/stream",
            json={"operation": "summarize", "text": TEXT},
            headers={**public, "X-Request-ID": "obs-log-stream"},
        )
        answered = served.post(
            "/v1/text/process",
            json={"operation": "qa", "text": TEXT, "question": QUESTION},
            headers=public,
        )
        rejected = served.post(
            "/v1/text/process",
            json={"operation": "summarize", "text": TEXT, "question": QUESTION},
            headers=public,
        )
        wrong = served.get("/v1/history", headers={"X-API-Key": "sk_wrong-key-4410aa"})
        rotated = served.post("/v1/auth/keys/rotate", headers={"X-API-Key": issued}).json()
        logged = served.records_of({"obs-log-process", "obs-log-stream"})
        records = logged["obs-log-process"]
        stream_access = _access_line(logged["obs-log-stream"])
        served.records_of({wrong.headers["X-Request-ID"], rejected.headers["X-Request-ID"]})

        lines = served.lines()
        parsed = [json.loads(line) for line in lines]  # raises on the first line that is not JSON
        access = _access_line(records)
        secrets = [PUBLIC_KEY, OPERATOR_KEY, PROVIDER_KEY, KEY_HASH_SECRET, issued]
        secrets += [rotated["api_key"], "sk_wrong-key-4410aa", TEXT, QUESTION, EMAIL, NAME]
        secrets += ["zebra-quartz", "Zebra-quartz", "lumen-8842", "Quentin"]
        leaked = {secret for secret in secrets for line in lines if secret in line}

        assert (processed.status_code, answered.status_code) == (200, 200)
        assert (rejected.status_code, wrong.status_code) == (422, 401)
        assert len(parsed) == len(lines) > 0
        assert access is not None
        assert access["route"].endswith("/text/process")  # the template, never the raw path
        assert {key: access[key] for key in ("status", "model", "cached")} == {
            "status": 200,
            "model": "openai:fake-llm",
            "cached": False,
        }
        assert access["key_id"].startswith("key:")
        assert streamed.status_code == 200
        assert stream_access is not None
        assert {key: stream_access[key] for key in ("route", "status", "model", "cached")} == {
            "route": "/v1/text/stream",
            "status": 200,
            "model": "openai:fake-llm",
            "cached": True,
        }
        assert access["latency_ms"] > 0
        assert len(records) > 1  # the provider's HTTP call and the SQL logged under the same id
        assert leaked == set()
