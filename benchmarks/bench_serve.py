"""Load test of `digest-rag serve` on 127.0.0.1, with an `update` committing a new generation mid-run.

Builds an index of the seeds (without 2024-06-28-daily-digest.txt) plus the shared ml-papers corpus,
starts `digest-rag serve` on a free local port (--rate-limit 0: the load generator is one client
address), then runs CLIENTS threads, each with its own keep-alive connection, asking the development
questions (eval/dev_queries.jsonl) in a loop for SECONDS seconds (and at most --max-requests in all).
A third of the way in, `digest-rag update` adds the held-out digest as a new generation (when the
update takes longer than the rest of the window, the clients go on until 5 s after the server switched,
at most --max-window seconds; the report gives the actual window). Reported:
throughput, latency p50/p99, errors (non-200 answers), dropped requests (connection errors, timeouts),
and that the answers switch: every answer after the switch comes from the new generation and
"Gemma 2 지식 증류" finds Gemma 2, which the old generation did not hold.

Then, per query after warm-up, at that size: p50 of one client asking the server one question at a
time, and p50 of the shell (digest_rag.frontends.shell.Shell.handle: refresh check + search + formatting).

Usage: python benchmarks/bench_serve.py [--mode lexical|hybrid] [--clients 8] [--seconds 30]
       (--mode hybrid builds with the random e5-small-shaped model of _common.e5_shaped_model)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ML_PAPERS, ROOT, SEEDS, WORK, e5_shaped_model, machine  # noqa: E402

HELD_OUT = "2024-06-28-daily-digest.txt"
PROBE = "Gemma 2 지식 증류"


def prepare(mode: str, rebuild: bool) -> tuple[Path, Path]:
    """(index dir, held-out file): the index over seeds minus HELD_OUT plus ml-papers, built once per mode."""
    from digest_rag import DigestIndex

    base = WORK / f"serve-{mode}"
    src = base / "corpus"
    index_dir = base / "index"
    if rebuild and base.exists():
        shutil.rmtree(base)
    if not src.is_dir():
        src.mkdir(parents=True)
        for f in SEEDS.iterdir():
            if f.name != HELD_OUT:
                shutil.copy(f, src / f.name)
    held = base / HELD_OUT
    shutil.copy(SEEDS / HELD_OUT, held)
    inputs = [src] + ([ML_PAPERS] if ML_PAPERS.is_dir() else [])
    if not ML_PAPERS.is_dir():
        print(f"# ml-papers corpus absent at {ML_PAPERS}: seeds only", file=sys.stderr)
    t = time.perf_counter()
    # Rebuilding with the same inputs is a no-op (up to date), which also rolls back the previous run's update.
    kw = {"lexical_only": True} if mode == "lexical" else {"model": str(e5_shaped_model())}
    idx = DigestIndex.build(inputs, index_dir=index_dir, force=True, **kw)
    print(f"# index: {idx.manifest.paper_count} papers, {idx.manifest.chunk_count} chunks, {mode}, "
          f"built in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    idx.close()
    return index_dir, held


def questions() -> list[str]:
    lines = (ROOT / "eval" / "dev_queries.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["query"] for line in lines if line.strip()]


class Result:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[tuple[float, float, int, str]] = []  # (start, seconds, status, generation)
        self.dropped: list[str] = []


def client_loop(port: int, qs: list[str], offset: int, mode: str, stop: list[float], res: Result,
                budget: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = offset
    while time.monotonic() < stop[0]:
        with res.lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        path = "/search?" + urllib.parse.urlencode({"q": qs[i % len(qs)], "k": 10, "mode": mode})
        i += 1
        t0 = time.monotonic()
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            rec = (t0, time.monotonic() - t0, r.status, r.getheader("X-Index-Generation") or "")
        except (OSError, http.client.HTTPException) as exc:
            with res.lock:
                res.dropped.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        with res.lock:
            res.records.append(rec)
    conn.close()


def get(port: int, path: str) -> tuple[int, dict | list, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    return r.status, body, r.getheader("X-Index-Generation") or ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["lexical", "hybrid"], default="lexical")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--max-window", type=float, default=300.0, help="seconds the window may be extended to")
    ap.add_argument("--sequential", type=int, default=200, help="questions for the one-at-a-time p50s")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()

    from digest_rag.testing import running_server

    index_dir, held = prepare(args.mode, args.rebuild)
    qs = questions()
    print(f"# machine: {machine()}; load average before: {os.getloadavg()}", file=sys.stderr)
    with running_server(index_dir, args=["--rate-limit", "0"], env={"HF_HUB_OFFLINE": "1"}) as url:
        port = int(url.rsplit(":", 1)[1])
        _s, before, gen0 = get(port, "/search?" + urllib.parse.urlencode({"q": PROBE, "k": 3, "mode": args.mode}))
        for q in qs[:10]:  # warm-up
            get(port, "/search?" + urllib.parse.urlencode({"q": q, "k": 10, "mode": args.mode}))
        res = Result()
        budget = [args.max_requests]
        start = time.monotonic()
        stop = [start + args.seconds]
        threads = [threading.Thread(target=client_loop, args=(port, qs, i * 7, args.mode, stop, res, budget))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.seconds / 3)
        t_update = time.monotonic()
        upd = subprocess.Popen([sys.executable, "-m", "digest_rag.frontends.cli", "update", str(held), "--index", str(index_dir),
                                "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
        cap = start + args.max_window
        first_new = None
        t_committed = None
        while time.monotonic() < cap:
            # Keep the clients asking until the update has committed and the server has answered from the new
            # generation for 5 s (on a quiet machine this is well inside the window; on a loaded one it extends it).
            if upd.poll() is not None and first_new is None:
                t_committed = t_committed or time.monotonic()
                new_gen = json.loads((index_dir / "manifest.json").read_text())["data_dir"]
                with res.lock:
                    first_new = min((r[0] for r in res.records if r[3] == new_gen), default=None)
            if first_new is not None:
                stop[0] = max(stop[0], first_new + 5)
                break
            stop[0] = max(stop[0], time.monotonic() + 1)
            time.sleep(0.2)
        upd_out, _err = upd.communicate()
        t_committed = t_committed or time.monotonic()
        for t in threads:
            t.join()
        _s, after, gen1 = get(port, "/search?" + urllib.parse.urlencode({"q": PROBE, "k": 3, "mode": args.mode}))

        # One question at a time, after warm-up: the per-query latency a single user sees, and the server's CPU
        # time per request (user + system, from /proc), which a loaded machine inflates far less than wall time.
        seq = []
        cpu0 = cpu_seconds(url.pid)
        for i in range(args.sequential):
            path = "/search?" + urllib.parse.urlencode({"q": qs[i % len(qs)], "k": 10, "mode": args.mode})
            t0 = time.perf_counter()
            get(port, path)
            seq.append(time.perf_counter() - t0)
        serve_cpu = (cpu_seconds(url.pid) - cpu0) / len(seq) * 1000
        page_seq = []
        for i in range(args.sequential // 2):  # what the search page asks: with highlighted snippets
            path = "/search?" + urllib.parse.urlencode({"q": qs[i % len(qs)], "k": 10, "mode": args.mode,
                                                        "highlight": "html"})
            t0 = time.perf_counter()
            get(port, path)
            page_seq.append(time.perf_counter() - t0)

    elapsed = max(r[0] + r[1] for r in res.records) - start
    lat = [r[1] for r in res.records]
    ok = [r for r in res.records if r[2] == 200]
    errors = len(res.records) - len(ok)
    gens = [r[3] for r in sorted(res.records)]
    switched_at = next((r[0] for r in sorted(res.records) if r[3] == gen1 != gen0), None)
    after_switch = [r for r in res.records if switched_at is not None and r[0] >= switched_at]
    stale_after = sum(1 for r in after_switch if r[3] != gen1)
    print(f"update: exit {upd.returncode}: {upd_out.strip()[:200]}")
    print(f"load: {args.clients} clients x {elapsed:.1f}s, mode {args.mode}: {len(res.records)} answers, "
          f"{len(res.records) / elapsed:.1f} req/s, p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
          f"max {max(lat) * 1000:.1f} ms, errors {errors}, dropped {len(res.dropped)}")
    if res.dropped:
        print("dropped:", res.dropped[:5])
    print(f"generations: {gen0} -> {gen1}; update ran {t_update - start:.1f}-{t_committed - start:.1f}s, "
          f"first new answer at {'never' if switched_at is None else f'{switched_at - start:.1f}s'}; answers per generation: "
          f"{ {g: gens.count(g) for g in dict.fromkeys(gens)} }; old-generation answers after the switch: {stale_after}")
    print(f"probe {PROBE!r}: before {[h['title'][:40] for h in before]} ({gen0}); "
          f"after {[h['title'][:40] for h in after]} ({gen1})")
    print(f"serve, one question at a time: p50 {pct(seq, 50):.1f} ms, p99 {pct(seq, 99):.1f} ms over {len(seq)}; "
          f"server CPU {serve_cpu:.1f} ms per request")
    print(f"serve, one question at a time with highlight=html (the page): p50 {pct(page_seq, 50):.1f} ms over "
          f"{len(page_seq)}")

    from digest_rag.frontends.live import LiveIndex
    from digest_rag.frontends.shell import Shell

    with LiveIndex(index_dir, interval=0) as live:
        for color in (True, False):  # on a terminal matches are coloured (a Kiwi pass per snippet); piped, not
            shell = Shell(live, color=color)
            shell.handle(f":mode {args.mode}")
            for q in qs[:10]:
                shell.handle(q)
            times, cpu = [], []
            for i in range(args.sequential):
                t0, c0 = time.perf_counter(), time.process_time()
                shell.handle(qs[i % len(qs)])
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            print(f"shell ({'terminal, colour' if color else 'piped, no colour'}), per question: "
                  f"p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms over {len(times)}; "
                  f"CPU p50 {pct(cpu, 50):.1f} ms")


if __name__ == "__main__":
    main()
