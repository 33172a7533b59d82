"""The REST half of scripts/compose_smoke.sh: drive a running alabel over HTTP like a client would.

    python scripts/compose_smoke_api.py URL TOKEN label-and-train  [--docs 300] [--labels 30]
    python scripts/compose_smoke_api.py URL TOKEN more-work PROJECT_ID [--batches 6]

``label-and-train`` creates a project, ingests real rt-snippets sentences (modelsvc.datasets, a seeded
sample), labels through queue/next with each sentence's own rt-snippets label until a retrain is due,
and waits for the first model to become the champion. It prints ``PROJECT_ID=<id>`` last.
``more-work`` gives the scaled-out workers something to consume: documents in several posts (each
queues scoring) and a manual retrain, then waits for the run to finish.

Standard library plus modelsvc.datasets (run with the project's virtualenv on the host).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from modelsvc.datasets import load_builtin


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        if status not in ok:
            raise SystemExit(f"smoke: {method} {path} answered {status}: {raw[:500].decode(errors='replace')}")
        return json.loads(raw) if raw else None


def step(message: str) -> None:
    print(f"smoke-api: {message}", flush=True)


def sample(n: int, seed: int, offset: int = 0) -> list[tuple[str, str]]:
    texts, labels = load_builtin("rt-snippets")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [(texts[i], labels[i]) for i in order[offset : offset + n]]


def wait_for(what: str, probe: Any, timeout_s: float, every_s: float = 5.0) -> Any:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        result = probe()
        if result:
            step(f"{what}: after {time.monotonic() - start:.0f} s")
            return result
        time.sleep(every_s)
    raise SystemExit(f"smoke: {what}: not within {timeout_s:.0f} s")


def label_and_train(api: Api, n_docs: int, n_labels: int, seed: int) -> int:
    rows = sample(n_docs, seed)
    label_of = {f"rt-{i}": label for i, (_, label) in enumerate(rows)}
    label_names = sorted(set(label_of.values()))
    project = api.call(
        "POST",
        "/api/v1/projects/",
        {
            "name": f"compose smoke {int(time.time())}",
            "labels": label_names,
            "retrain_after": n_labels - 10,
        },
    )
    pid = project["id"]
    step(f"project {pid} created, labels {label_names}, retrain_after {n_labels - 10}")
    docs = [{"text": text, "external_id": f"rt-{i}"} for i, (text, _) in enumerate(rows)]
    out = api.call("POST", f"/api/v1/projects/{pid}/documents/", docs)
    splits = [r.get("split") for r in out.get("results", [])]
    step(
        f"ingested {len(docs)} rt-snippets sentences over REST: {out.get('created')} created, "
        f"{splits.count('pool')} pool / {splits.count('holdout')} holdout"
    )
    labeled = 0
    while labeled < n_labels:
        item = api.call("POST", f"/api/v1/projects/{pid}/queue/next")
        if item is None:
            raise SystemExit("smoke: the queue ran dry before enough labels")
        label = label_of[item["document"]["external_id"]]
        api.call(
            "POST", f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": label, "duration_ms": 1500}
        )
        labeled += 1
    step(f"labeled {labeled} documents through queue/next with their rt-snippets labels")

    def champion() -> Any:
        runs = api.call("GET", f"/api/v1/projects/{pid}/training-runs/")
        runs = runs.get("results", runs) if isinstance(runs, dict) else runs
        failed = [r for r in runs if r.get("status") == "failed"]
        if failed:
            raise SystemExit(f"smoke: training run failed: {json.dumps(failed[0])[:800]}")
        versions = api.call("GET", f"/api/v1/projects/{pid}/models/")
        versions = versions.get("results", versions) if isinstance(versions, dict) else versions
        return next((v for v in versions if v.get("status") == "champion"), None)

    model = wait_for("a promoted model (champion)", champion, timeout_s=1200)
    metrics = model.get("metrics") or {}
    shown = {k: metrics[k] for k in ("evaluated_on", "accuracy", "macro_f1", "holdout_count") if k in metrics}
    step(f"champion: version {model.get('version')} status {model.get('status')} {json.dumps(shown)}")
    prediction = api.call(
        "POST",
        f"/api/v1/projects/{pid}/predict",
        {"texts": ["A warm, funny and beautifully acted film.", "Tedious, flat and far too long."]},
    )
    shown_predictions = [
        (p.get("label"), round(p.get("confidence", 0.0), 3), p.get("model_version"))
        for p in prediction.get("predictions", [])
    ]
    step(f"predict through web (label, confidence, model version): {shown_predictions}")
    return int(pid)


def more_work(api: Api, pid: int, batches: int, seed: int) -> None:
    rows = sample(40 * batches, seed, offset=2000)
    for b in range(batches):
        chunk = rows[b * 40 : (b + 1) * 40]
        api.call(
            "POST",
            f"/api/v1/projects/{pid}/documents/",
            [{"text": t, "external_id": f"rt-more-{b}-{i}"} for i, (t, _) in enumerate(chunk)],
        )
    step(f"ingested {40 * batches} more sentences in {batches} posts (each queues scoring)")
    run = api.call("POST", f"/api/v1/projects/{pid}/training-runs/")
    step(f"manual retrain requested: run {run.get('id')} ({run.get('status')})")

    def finished() -> Any:
        runs = api.call("GET", f"/api/v1/projects/{pid}/training-runs/")
        runs = runs.get("results", runs) if isinstance(runs, dict) else runs
        mine = next((r for r in runs if r.get("id") == run.get("id")), None)
        return mine if mine and mine.get("status") in ("succeeded", "failed") else None

    done = wait_for(f"run {run.get('id')} finished", finished, timeout_s=1200)
    step(
        f"run {done.get('id')}: {done.get('status')}, {done.get('labels_used')} labels, "
        f"promoted {done.get('promoted')} ({done.get('decision_reason')})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("action", choices=["label-and-train", "more-work"])
    parser.add_argument("project", nargs="?", type=int)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--labels", type=int, default=30)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    api = Api(args.url, args.token)
    if args.action == "label-and-train":
        print(f"PROJECT_ID={label_and_train(api, args.docs, args.labels, args.seed)}", flush=True)
    else:
        if args.project is None:
            sys.exit("more-work needs PROJECT_ID")
        more_work(api, args.project, args.batches, args.seed)


if __name__ == "__main__":
    main()
