#!/usr/bin/env python3
"""Load test of `radistill serve` on loopback (issue 17), Python standard library only.

Starts the server on MODEL with --cache-budget and --ctx, then runs --clients concurrent clients;
each sends --requests streamed completions whose prompt (token ids) plus --gen new tokens fill the
context (--ctx tokens), with ignore_eos so every request generates exactly --gen tokens. A 503 is
retried after its Retry-After (so no request is lost, only delayed); anything else that is not a
complete stream counts as lost. While it runs, /metrics is polled to find how many sessions were
active at once. Prints one JSON object: sessions that fit (observed and analytic), aggregate
tokens/s, time per output token p50/p99 (between streamed chunks of one request), time to first
token p50/p99, 503s, lost requests, and the largest and mean batch of the decode steps.

usage: bench/serve_load.py RADISTILL MODEL --cache-budget 16MiB --ctx 1024 --gen 32 --clients 24 --requests 2
"""
import argparse
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("radistill")
p.add_argument("model")
p.add_argument("--cache-budget", default="16MiB")
p.add_argument("--ctx", type=int, default=1024)
p.add_argument("--gen", type=int, default=32)
p.add_argument("--clients", type=int, default=16)
p.add_argument("--requests", type=int, default=2, help="requests per client, one after the other")
p.add_argument("--max-sessions", type=int, default=256)
p.add_argument("--timeout", type=float, default=900, help="bound on the whole run, seconds")
a = p.parse_args()

server = subprocess.Popen([a.radistill, "--threads", "1", "-q", "serve", a.model, "--port", "0", "--ctx", str(a.ctx),
                           "--cache-budget", a.cache_budget, "--max-sessions", str(a.max_sessions),
                           "--max-queue", str(a.clients), "--queue-timeout", "5", "--request-timeout", str(a.timeout)],
                          stdout=subprocess.PIPE, text=True)
line = server.stdout.readline()
m = re.search(r"listening on (http://\S+)", line)
if not m:
    server.kill()
    raise SystemExit(f"the server did not start: {line!r}")
base = m.group(1)
meta = json.load(urllib.request.urlopen(base + "/v1/models"))["data"][0]["meta"]
deadline = time.monotonic() + a.timeout


def metrics():
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    return {l.split(" ")[0]: float(l.split(" ")[1]) for l in text.splitlines() if l and not l.startswith("#")}


lock = threading.Lock()
tpot, ttft, stats = [], [], {"done": 0, "lost": 0, "retries_503": 0, "tokens": 0}
n_prompt = a.ctx - a.gen + 1  # prompt + gen - 1 tokens fill the context


def one_request(client, r):
    # A distinct prompt per request (token ids inside the vocabulary, no special ones).
    prompt = [(client * 7919 + r * 104729 + i * 31) % (meta["n_vocab"] - 16) + 4 for i in range(n_prompt)]
    body = json.dumps({"prompt": prompt, "max_tokens": a.gen, "ignore_eos": True, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    while time.monotonic() < deadline:
        req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
        t0 = time.monotonic()
        try:
            resp = urllib.request.urlopen(req, timeout=a.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 503:
                with lock:
                    stats["retries_503"] += 1
                time.sleep(float(e.headers.get("Retry-After", "1")))
                continue
            break
        except OSError:
            break
        times, usage, done = [], None, False
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            ev = json.loads(line[6:])
            if ev.get("usage"):
                usage = ev["usage"]
            elif ev["choices"] and ev["choices"][0]["text"]:
                times.append(time.monotonic())
        with lock:
            if done and usage and usage["completion_tokens"] == a.gen:
                stats["done"] += 1
                stats["tokens"] += a.gen
                if times:
                    ttft.append(times[0] - t0)
                    # Time per output token: the gaps between a request's text chunks (one token each,
                    # except where text is held back at an incomplete UTF-8 sequence).
                    tpot.extend(t1 - t0_ for t0_, t1 in zip(times, times[1:]))
            else:
                stats["lost"] += 1
        return
    with lock:
        stats["lost"] += 1


max_active = [0]
stop_poll = threading.Event()


def poll():
    while not stop_poll.is_set():
        try:
            max_active[0] = max(max_active[0], int(metrics().get("radistill_active_sessions", 0)))
        except OSError:
            pass
        time.sleep(0.05)


poller = threading.Thread(target=poll)
poller.start()
t_start = time.monotonic()
threads = [threading.Thread(target=lambda c=c: [one_request(c, r) for r in range(a.requests)]) for c in range(a.clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - t_start
stop_poll.set()
poller.join()
final = metrics()
server.terminate()
server.wait(timeout=60)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


per_session = meta["cache_bytes_per_full_context"]
budget = int(final["radistill_cache_budget_bytes"])
print(json.dumps({
    "model": a.model, "hybrid": meta["hybrid"], "ctx": a.ctx, "gen": a.gen, "clients": a.clients,
    "requests": a.clients * a.requests, "completed": stats["done"], "lost": stats["lost"],
    "retries_503": stats["retries_503"], "cache_budget": budget, "cache_bytes_per_session": per_session,
    "sessions_fit_analytic": budget // per_session, "sessions_active_max": max_active[0],
    "aggregate_tokens_per_s": round(stats["tokens"] / elapsed, 1), "seconds": round(elapsed, 1),
    "tpot_p50_ms": round(1000 * pct(tpot, 0.5), 2) if tpot else None,
    "tpot_p99_ms": round(1000 * pct(tpot, 0.99), 2) if tpot else None,
    "ttft_p50_s": round(pct(ttft, 0.5), 3) if ttft else None, "ttft_p99_s": round(pct(ttft, 0.99), 3) if ttft else None,
    # Continuous batching: the most sequences in one decode step, and the mean over all steps.
    "decode_batch_max": int(final.get("radistill_decode_batch_max", 0)),
    "decode_batch_mean": round(final.get("radistill_decode_rows_total", 0) / max(1, final.get("radistill_decode_steps_total", 0)), 2),
}))
