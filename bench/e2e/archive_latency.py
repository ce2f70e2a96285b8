"""End-to-end latency: API `POST /v1/reviews` → the review queryable in the archive.

Posts a few reviews, then polls the query endpoint (through nginx, as an analyst would) until
each review id is in `reviews_enriched`. Target: ≤ the archiver's window + 15 s
(ARCHIVER_WINDOW_S, 30 s under `pulse up`). Baseline: the archiver's window itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli" / "src"))
from pulse_cli.stackenv import repo_root, stack_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reviews", type=int, default=5)
    parser.add_argument(
        "--window-s", type=float, default=float(os.environ.get("ARCHIVER_WINDOW_S", "30"))
    )
    parser.add_argument("--timeout-s", type=float, default=180.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.reviews = 2
    env = stack_env(repo_root())
    headers = {"X-API-Key": env["PULSE_API_KEY"]}
    run_id = uuid.uuid4().hex[:8]
    sku = f"ARCH-{run_id.upper()}"
    posted: dict[str, float] = {}
    with httpx.Client(
        base_url=env.get("PULSE_API_URL", "http://127.0.0.1:58000"), headers=headers, timeout=10.0
    ) as client:
        client.post(
            "/v1/products",
            headers={"Idempotency-Key": f"{run_id}-p"},
            json={"sku": sku, "name": "Archive probe", "brand": "Bench", "category": "bench"},
        )
        for n in range(args.reviews):
            response = client.post(
                "/v1/reviews",
                headers={"Idempotency-Key": f"{run_id}-{n}"},
                json={
                    "product_sku": sku,
                    "rating": 5,
                    "title": "probe",
                    "body": f"Archive latency probe {n}.",
                    "author_name": "Bench",
                    "locale": "en",
                },
            )
            response.raise_for_status()
            posted[str(response.json()["id"])] = time.monotonic()
        seen: dict[str, float] = {}
        ids = ", ".join(f"'{rid}'" for rid in posted)
        sql = f"SELECT DISTINCT review_id FROM reviews_enriched WHERE review_id IN ({ids})"
        deadline = time.monotonic() + args.timeout_s
        while len(seen) < len(posted) and time.monotonic() < deadline:
            response = client.post("/v1/query", json={"sql": sql})
            if response.status_code == 200:
                now = time.monotonic()
                for (rid,) in response.json()["rows"]:
                    seen.setdefault(rid, now)
            time.sleep(0.5)
    latencies = [seen[r] - posted[r] for r in seen]
    worst = max(latencies) if latencies else float("inf")
    target = args.window_s + 15
    ok = len(seen) == len(posted) and worst <= target
    print(
        f"{len(seen)}/{len(posted)} queryable; latencies {[round(x, 1) for x in latencies]}",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "figures": [
                    {
                        "name": "API POST -> queryable in archive (max)",
                        "value": round(worst, 1) if latencies else None,
                        "unit": "s",
                        "baseline": args.window_s,
                        "ratio": round(worst / args.window_s, 2) if latencies else None,
                        "target": f"<= window + 15 s = {target:g} s",
                        "pass": ok,
                    }
                ]
            }
        )
    )


if __name__ == "__main__":
    main()
