#!/usr/bin/env python
"""Arena server under load, on 127.0.0.1 with the real default reward (``safegrpo serve arena``).

Phase 1: N concurrent episodes (half WS, half HTTP) started at once. Each resets, steps with an
action unique to it, and tries a second step (HTTP: concurrently with the first). Reports lost
episodes (no scored reply), cross-talk (a reply carrying another episode's id, prompt or action),
double rewards (a second accepted step), and p50/p99 of reset and step latency; meanwhile one
more client resets in a loop (``probe_reset``: does a reset wait behind the judges?).
Phase 2: P reset/step pairs through W workers (half WS, half HTTP); the server's RSS before,
halfway and after, with its session count (bounded by max_sessions).

    python benchmarks/arena_load.py [--episodes 200] [--pairs 2000] [--workers 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import websockets

ROOT = Path(__file__).resolve().parents[1]
DECISIONS = ("allow", "reject", "transform")


def action(i: int) -> dict:
    d = DECISIONS[i % 3]
    if d == "transform":
        return {"decision": d, "rewrite": f"a calm garden scene, variant {i}", "reason": f"ep{i}"}
    return {"decision": d, "reason": f"ep{i}"}


def check(i: int, reset_obs: dict, res: dict, problems: dict) -> None:
    """Cross-talk check: the scored reply must carry this episode's id, prompt and action."""
    obs = res["observation"]
    sent = action(i)
    mine = (
        obs["metadata"]["episode_id"] == reset_obs["metadata"]["episode_id"]
        and obs["prompt"] == reset_obs["prompt"]
        and obs["history"][0]["action"]["reason"] == sent["reason"]
        and obs["metadata"]["decision"] == sent["decision"]
    )
    if not mine:
        problems["cross_talk"] += 1


async def ws_episode(url: str, i: int, lat: dict, problems: dict) -> None:
    async with websockets.connect(f"ws://{url}/ws", max_size=1 << 22) as ws:
        t0 = time.perf_counter()
        await ws.send(json.dumps({"type": "reset", "data": {}}))
        reset = json.loads(await ws.recv())
        t1 = time.perf_counter()
        await ws.send(json.dumps({"type": "step", "data": action(i)}))
        res = json.loads(await ws.recv())
        t2 = time.perf_counter()
        await ws.send(json.dumps({"type": "step", "data": action(i)}))
        again = json.loads(await ws.recv())
    if reset["type"] != "observation" or res["type"] != "observation":
        problems["lost"] += 1
        return
    lat["reset"].append(t1 - t0)
    lat["step"].append(t2 - t1)
    check(i, reset["data"]["observation"], res["data"], problems)
    if again["type"] != "error":
        problems["double_reward"] += 1


async def http_episode(c: httpx.AsyncClient, i: int, lat: dict, problems: dict) -> None:
    t0 = time.perf_counter()
    r = await c.post("/reset", json={})
    t1 = time.perf_counter()
    if r.status_code != 200:
        problems["lost"] += 1
        return
    reset = r.json()["observation"]
    body = {"session_id": reset["metadata"]["session_id"], "action": action(i)}

    async def timed_step():
        s0 = time.perf_counter()
        out = await c.post("/step", json=body)
        return out, time.perf_counter() - s0

    (a, ta), (b, tb) = await asyncio.gather(timed_step(), timed_step())
    ok = [(x, t) for x, t in ((a, ta), (b, tb)) if x.status_code == 200]
    if not ok:
        problems["lost"] += 1
        return
    if len(ok) > 1:
        problems["double_reward"] += 1
    lat["reset"].append(t1 - t0)
    lat["step"].append(ok[0][1])
    check(i, reset, ok[0][0].json(), problems)


async def probe(url: str, lat: dict, stop: asyncio.Event) -> None:
    """One extra client resetting over and over while the load runs: does a reset wait behind
    the judges?"""
    async with httpx.AsyncClient(base_url=f"http://{url}", timeout=600) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            await c.post("/reset", json={})
            lat["probe_reset"].append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)


async def guarded(coro, problems: dict) -> None:
    try:
        await coro
    except (httpx.TransportError, websockets.ConnectionClosed):
        problems["transport_errors"] += 1


async def phase1(url: str, n: int) -> dict:
    lat = {"reset": [], "step": [], "probe_reset": []}
    problems = {"lost": 0, "cross_talk": 0, "double_reward": 0, "transport_errors": 0}
    limits = httpx.Limits(max_connections=2 * n)
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=f"http://{url}", timeout=600, limits=limits) as c:
        t0 = time.perf_counter()
        prober = asyncio.create_task(probe(url, lat, stop))
        await asyncio.gather(
            *[guarded(ws_episode(url, i, lat, problems), problems) for i in range(n // 2)],
            *[guarded(http_episode(c, i, lat, problems), problems) for i in range(n // 2, n)],
        )
        wall = time.perf_counter() - t0
        stop.set()
        await prober
    return {
        "episodes": n,
        "wall_s": round(wall, 2),
        **problems,
        **{
            f"{k}_{q}_ms": round(float(np.percentile(v, p)) * 1000, 1)
            for k, v in lat.items()
            for q, p in (("p50", 50), ("p99", 99))
            if v
        },
    }


async def pairs(url: str, total: int, workers: int, errors: list) -> None:
    per = total // workers

    async def ws_worker(w: int):
        async with websockets.connect(f"ws://{url}/ws", max_size=1 << 22) as ws:
            for k in range(per):
                for msg in ({"type": "reset", "data": {}}, {"type": "step", "data": action(k)}):
                    await ws.send(json.dumps(msg))
                    if json.loads(await ws.recv())["type"] == "error":
                        errors.append(w)

    async def http_worker(c: httpx.AsyncClient, w: int):
        for k in range(per):
            r = await c.post("/reset", json={})
            sid = r.json()["observation"]["metadata"]["session_id"]
            s = await c.post("/step", json={"session_id": sid, "action": action(k)})
            if s.status_code != 200:
                errors.append(w)

    async with httpx.AsyncClient(base_url=f"http://{url}", timeout=600) as c:
        await asyncio.gather(
            *[ws_worker(w) for w in range(workers // 2)],
            *[http_worker(c, w) for w in range(workers // 2, workers)],
        )


def start_server(port: int, sets: list[str], log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "safegrpo.cli", "serve", "arena", "--port", str(port)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited; see its log")
        try:
            if httpx.get(f"http://{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("server did not become healthy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="server setting")
    args = ap.parse_args()
    port = free_port()
    url = f"127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", prefix="arena_server_", suffix=".log", delete=False)
    proc = start_server(port, args.sets, log)
    print(f"server log: {log.name}")
    try:
        wait_ready(url, proc)
        server = psutil.Process(proc.pid)
        asyncio.run(phase1(url, 8))  # warm-up: judges loaded, first batches traced
        p1 = asyncio.run(phase1(url, args.episodes))
        print("phase 1:", json.dumps(p1))
        rss, errors = [server.memory_info().rss], []
        t0 = time.perf_counter()
        for _ in range(2):
            asyncio.run(pairs(url, args.pairs // 2, args.workers, errors))
            rss.append(server.memory_info().rss)
        wall = time.perf_counter() - t0
        meta = httpx.get(f"http://{url}/metadata").json()["sessions"]
        sessions = {k: v for k, v in meta.items() if not isinstance(v, str)}
        mib = [round(r / 2**20, 1) for r in rss]
        print(
            "phase 2:",
            json.dumps(
                {
                    "pairs": args.pairs,
                    "workers": args.workers,
                    "errors": len(errors),
                    "pairs_per_s": round(args.pairs / wall, 1),
                    "rss_mib_before_half_after": mib,
                    "rss_growth_second_half_mib": round(mib[2] - mib[1], 1),
                    "server_sessions": sessions,
                }
            ),
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
