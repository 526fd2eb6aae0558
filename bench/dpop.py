"""``python -m bench.dpop``: /upload throughput with DPoP-bound tokens against Bearer tokens.

Starts the development issuer and ``python boot.py`` on 127.0.0.1, gets one Bearer token and
one DPoP-bound token (proof signed by a P-256 key made here), then runs the same closed loop
with each in turn, interleaved (B D, D B, B D...) so a noisy neighbour hits both alike. The load
generator is Python (asyncio + httpx) because every DPoP request needs a new proof: it signs one
per request, inside the timed loop, as a real client would. Prints each run and the medians,
with the API process's CPU time per request (steadier than throughput on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from kto.client.dpop import DPoPKey

from bench.harness import start_api
from bench.issuer import AUDIENCE, start_issuer
from bench.load import closed_loop, multipart_body
from bench.workload import bench_image, resolve_model
from cats_dogs_other.loopback import LOOPBACK, free_port
from tools.procfs import cpu_model, load_average

RAW_DIR = Path(__file__).with_name("results") / "raw"


@dataclass
class Run:
    kind: str
    requests: int
    errors: int
    seconds: float
    server_cpu_s: float  # the API process's user + system time during the run

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        """Less sensitive to a busy machine than throughput: work done, not time waited."""
        return 1000 * self.server_cpu_s / max(self.requests + self.errors, 1)


def dpop_token(issuer_url: str, key: DPoPKey) -> str:
    endpoint = issuer_url + "oauth/token"
    response = httpx.post(
        endpoint,
        json={
            "grant_type": "client_credentials",
            "client_id": "dev-client",
            "client_secret": "dev-secret",
            "audience": AUDIENCE,
        },
        headers={"DPoP": key.proof("POST", httpx.URL(endpoint))},
    )
    response.raise_for_status()
    if response.json()["token_type"] != "DPoP":  # noqa: S105 - a token type, not a secret
        raise RuntimeError("the issuer did not bind the token to the DPoP key")
    token: str = response.json()["access_token"]
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--rounds", type=int, default=3, help="each round runs Bearer and DPoP")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args(argv)

    log_dir = RAW_DIR / "dpop"
    model_path, model_note = resolve_model(args.model, RAW_DIR)
    issuer = start_issuer(log_dir)
    port = free_port()
    env = {"OAUTH2_ISSUER": issuer.url, "OAUTH2_AUDIENCE": AUDIENCE, "MODEL_PATH": str(model_path)}
    api = start_api({**env, "LOG_LEVEL": "WARNING"}, port, log_dir, "api")
    try:
        api.wait_until("/ready")
        key = DPoPKey()
        bound = dpop_token(issuer.url, key)
        url = f"http://{LOOPBACK}:{port}/upload"
        upload = httpx.URL(url)
        body, content_type = multipart_body(bench_image()[0])
        kinds = {
            "Bearer": lambda: {"Authorization": f"Bearer {issuer.token}"},
            "DPoP": lambda: {
                "Authorization": f"DPoP {bound}",
                "DPoP": key.proof("POST", upload, access_token=bound),
            },
        }
        asyncio.run(closed_loop(url, body, content_type, kinds["DPoP"], args.connections, 3))
        runs: list[Run] = []
        for round_index in range(args.rounds):
            order = ["Bearer", "DPoP"] if round_index % 2 == 0 else ["DPoP", "Bearer"]
            for kind in order:
                started, cpu_before = time.monotonic(), api.cpu_seconds()
                latencies, statuses = asyncio.run(
                    closed_loop(
                        url, body, content_type, kinds[kind], args.connections, args.seconds
                    )
                )
                ok, errors = len(latencies), statuses.total()
                seconds, cpu_s = time.monotonic() - started, api.cpu_seconds() - cpu_before
                run = Run(kind, ok, errors, seconds, cpu_s)
                runs.append(run)
                print(
                    f"[bench.dpop] round {round_index + 1} {kind:6}: {run.per_second:7.1f} req/s "
                    f"({ok} ok, {errors} errors, {run.seconds:.1f} s), "
                    f"server CPU {run.cpu_ms_per_request:.2f} ms/request",
                    flush=True,
                )
    finally:
        api.stop()
        issuer.stop()
    medians = {
        kind: statistics.median(r.per_second for r in runs if r.kind == kind) for kind in kinds
    }
    cpu = {
        kind: statistics.median(r.cpu_ms_per_request for r in runs if r.kind == kind)
        for kind in kinds
    }
    print(
        json.dumps(
            {
                "connections": args.connections,
                "seconds_per_run": args.seconds,
                "rounds": args.rounds,
                "model": model_note,
                "cpu": cpu_model(),
                "load_average_after": load_average(),
                "median_req_per_s": {k: round(v, 1) for k, v in medians.items()},
                "dpop_vs_bearer": round(medians["DPoP"] / medians["Bearer"], 3),
                "median_server_cpu_ms_per_request": {k: round(v, 2) for k, v in cpu.items()},
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
