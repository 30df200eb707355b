"""The peer benchmark's Python driver: TensorZero embedded and the LiteLLM Router.

Run by `cargo xtask bench peers` with the venv it prepares outside the clone; prints one JSON
result line per point, with the same fields as the Rust driver's
(`infermux_benches::peers::Measurement`).

    python driver.py --peer tensorzero|litellm --upstream http://127.0.0.1:PORT
        --point MODE:CONCURRENCY:RATE:plain|stream [--point …]
        [--warmup S] [--secs S] [--repeat N]

MODE is `closed` or `open`; RATE is 0 in a closed loop. All the points of one run share one
process: importing LiteLLM takes seconds (half a minute on a loaded machine), so a process per
point would spend the run importing. Before its first point the driver makes one call of each
kind it will measure (lazy imports, connection set-up), and before each point it resets the
process's peak RSS (`/proc/self/clear_refs`), so each point reports its own peak.
"""

import argparse
import asyncio
import glob
import json
import os
import sys
import tempfile
import time
import urllib.request

# LiteLLM fetches its model price map from the network on import unless told not to, and may
# send telemetry: neither is wanted (the benchmark talks to loopback only).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

MODEL = "mock"
PROMPT = "Say hello."
# A closed-loop window is extended until this many answers, up to MAX_WINDOW_S seconds.
MIN_REQUESTS = 10
MAX_WINDOW_S = 30.0
# An open-loop point at a rate the peer cannot serve at all (nothing answered).
SATURATED = object()


def cpu_ns():
    """This process's CPU time (ns): schedstat summed over live threads, else utime+stime."""
    total, found = 0, False
    for path in glob.glob("/proc/self/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
                found = True
        except OSError:
            pass
    if found:
        return total
    t = os.times()
    return int((t.user + t.system) * 1e9)


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def upstream_stats(upstream):
    with urllib.request.urlopen(upstream + "/stats", timeout=10) as r:
        return json.loads(r.read())


def quantile(sorted_values, q):
    if not sorted_values:
        return 0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


class TensorZero:
    """TensorZero's Python client with its embedded gateway (no separate process)."""

    async def setup(self, upstream):
        from tensorzero import AsyncTensorZeroGateway

        self.dir = tempfile.TemporaryDirectory()
        config = os.path.join(self.dir.name, "tensorzero.toml")
        with open(config, "w") as f:
            f.write(
                f"""
[gateway.observability]
enabled = false

[models.{MODEL}]
routing = ["mock"]

[models.{MODEL}.providers.mock]
type = "openai"
model_name = "{MODEL}"
api_base = "{upstream}/v1/"
api_key_location = "none"
"""
            )
        self.gw = await AsyncTensorZeroGateway.build_embedded(config_file=config, async_setup=True)

    def _input(self):
        return {"messages": [{"role": "user", "content": PROMPT}]}

    async def plain(self):
        r = await self.gw.inference(model_name=MODEL, input=self._input())
        text = "".join(getattr(c, "text", "") or "" for c in r.content)
        if not text:
            raise RuntimeError("an empty answer")

    async def stream(self, start):
        ttft = None
        s = await self.gw.inference(model_name=MODEL, input=self._input(), stream=True)
        async for chunk in s:
            for c in getattr(chunk, "content", []) or []:
                if ttft is None and (getattr(c, "text", "") or ""):
                    ttft = time.perf_counter_ns() - start
        if ttft is None:
            raise RuntimeError("a stream without text")
        return ttft


class LiteLLM:
    """LiteLLM's Router over one `openai/…` deployment whose api_base is the mock."""

    async def setup(self, upstream):
        import litellm
        from litellm import Router

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.router = Router(
            model_list=[
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": f"{upstream}/v1",
                        "api_key": "sk-bench",
                    },
                }
            ]
        )

    def _messages(self):
        return [{"role": "user", "content": PROMPT}]

    async def plain(self):
        r = await self.router.acompletion(model=MODEL, messages=self._messages())
        if not r.choices[0].message.content:
            raise RuntimeError("an empty answer")

    async def stream(self, start):
        ttft = None
        s = await self.router.acompletion(model=MODEL, messages=self._messages(), stream=True)
        async for chunk in s:
            for c in chunk.choices:
                if ttft is None and (c.delta.content or ""):
                    ttft = time.perf_counter_ns() - start
        if ttft is None:
            raise RuntimeError("a stream without text")
        return ttft


class Samples:
    def __init__(self):
        self.latency, self.ttft, self.errors, self.dropped, self.first_error = [], [], 0, 0, None
        # The closed loop's real window in seconds when it had to be longer than --secs.
        self.window = None

    def record(self, latency, ttft, error):
        if error is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = repr(error)
        else:
            self.latency.append(latency)
            if ttft is not None:
                self.ttft.append(ttft)


async def call(peer, stream, start):
    """(ttft or None, error or None)."""
    try:
        if stream:
            return await peer.stream(start), None
        await peer.plain()
        return None, None
    except Exception as e:  # noqa: BLE001 - any failure is counted as an error
        return None, e


def snapshot(upstream):
    return time.perf_counter_ns(), cpu_ns(), upstream_stats(upstream)


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


async def closed(peer, a):
    phase = {"p": 0}
    samples = Samples()

    async def caller():
        while phase["p"] != 2:
            start = time.perf_counter_ns()
            ttft, error = await call(peer, a.stream, start)
            latency = time.perf_counter_ns() - start
            if phase["p"] == 1:
                samples.record(latency, ttft, error)

    tasks = [asyncio.create_task(caller()) for _ in range(a.concurrency)]
    await asyncio.sleep(a.warmup)
    before = snapshot(a.upstream)
    phase["p"] = 1
    opened = time.perf_counter()
    await asyncio.sleep(a.secs)
    # A gateway slower than the window (LiteLLM at c = 256 answers in seconds) gets a longer
    # one, until MIN_REQUESTS answers or MAX_WINDOW_S: its rate is taken over the real window.
    while len(samples.latency) < MIN_REQUESTS and time.perf_counter() - opened < MAX_WINDOW_S:
        await asyncio.sleep(0.1)
    phase["p"] = 2
    samples.window = time.perf_counter() - opened
    after = snapshot(a.upstream)
    await asyncio.gather(*tasks)
    return before, after, samples


async def open_loop(peer, a):
    samples = Samples()
    period = 1e9 / a.rate
    start = time.perf_counter_ns()
    t0 = start + int(a.warmup * 1e9)
    t1 = t0 + int(a.secs * 1e9)
    state = {"in_flight": 0, "before": None}
    pending = set()

    async def one(scheduled, record):
        ttft, error = await call(peer, a.stream, scheduled)
        latency = time.perf_counter_ns() - scheduled
        if record:
            samples.record(latency, ttft, error)
        state["in_flight"] -= 1

    k = 0
    while True:
        scheduled = start + int(k * period)
        if scheduled >= t1:
            break
        now = time.perf_counter_ns()
        if scheduled > now:
            await asyncio.sleep((scheduled - now) / 1e9)
        if state["before"] is None and scheduled >= t0:
            state["before"] = snapshot(a.upstream)
        record = scheduled >= t0
        if state["in_flight"] >= a.concurrency:
            if record:
                samples.dropped += 1
        else:
            state["in_flight"] += 1
            t = asyncio.create_task(one(scheduled, record))
            pending.add(t)
            t.add_done_callback(pending.discard)
        k += 1
    now = time.perf_counter_ns()
    if t1 > now:
        await asyncio.sleep((t1 - now) / 1e9)
    after = snapshot(a.upstream)
    # Answers still due get 5 s, or up to MAX_WINDOW_S until MIN_REQUESTS have succeeded (a
    # gateway far below the rate, LiteLLM at 1 000/s, answers in seconds).
    waited = time.perf_counter()
    while pending:
        elapsed = time.perf_counter() - waited
        if elapsed >= MAX_WINDOW_S or (elapsed >= 5 and len(samples.latency) >= MIN_REQUESTS):
            break
        await asyncio.wait(set(pending), timeout=0.1)
    for t in set(pending):
        t.cancel()
    samples.dropped += len(pending)
    return state["before"] or after, after, samples


class Point:
    def __init__(self, text):
        try:
            mode, concurrency, rate, kind = text.split(":")
            self.mode, self.concurrency, self.rate = mode, int(concurrency), int(rate)
            if mode not in ("closed", "open") or kind not in ("plain", "stream"):
                raise ValueError
            if self.concurrency < 1 or (mode == "open" and self.rate <= 0):
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a point (MODE:CONCURRENCY:RATE:plain|stream): {text}")
        self.stream = kind == "stream"


async def measure(peer, a, point):
    """One point's JSON result, or None when no request succeeded."""
    a.mode, a.concurrency, a.rate, a.stream = point.mode, point.concurrency, point.rate, point.stream
    reset_peak_rss()
    if a.mode == "closed":
        before, after, s = await closed(peer, a)
    else:
        before, after, s = await open_loop(peer, a)
    if s.first_error:
        print(f"{a.peer}: {s.errors} errors, the first: {s.first_error}", file=sys.stderr)
    n = len(s.latency)
    if n == 0 and a.mode == "open" and s.errors == 0 and s.dropped > 0:
        # Saturated, not broken: every send was skipped or still unanswered 30 s later.
        print(
            f"{a.peer}: saturated at {a.rate}/s: no answer within the window and 30 s after it "
            f"({s.dropped} sends dropped); the point is left out of this repeat",
            file=sys.stderr,
        )
        return SATURATED
    if n == 0:
        print(f"{a.peer}: no request succeeded in the window", file=sys.stderr)
        return None
    window = s.window if s.window is not None else a.secs
    s.latency.sort()
    s.ttft.sort()
    wall = after[0] - before[0]
    up_cpu = after[2]["cpu_ns"] - before[2]["cpu_ns"]
    up_req = after[2]["requests"] - before[2]["requests"]
    return {
        "peer": a.peer,
        "runtime": "python",
        "mode": a.mode,
        "stream": a.stream,
        "concurrency": a.concurrency,
        "rate": a.rate,
        "repeat": a.repeat,
        "secs": window,
        "requests": n,
        "errors": s.errors,
        "dropped": s.dropped,
        "rps": n / window,
        "p50_us": quantile(s.latency, 0.5) / 1000,
        "p99_us": quantile(s.latency, 0.99) / 1000,
        "ttft_p50_us": quantile(s.ttft, 0.5) / 1000 if a.stream else None,
        "ttft_p99_us": quantile(s.ttft, 0.99) / 1000 if a.stream else None,
        "cpu_us_per_req": (after[1] - before[1]) / 1000 / n,
        "peak_rss_kb": peak_rss_kb(),
        "upstream_cpu_us_per_req": up_cpu / 1000 / up_req if up_req else 0.0,
        "upstream_busy": up_cpu / wall if wall > 0 else 0.0,
        "upstream_requests": up_req,
        "gateway_cpu_us_per_req": None,
        "gateway_rss_kb": None,
    }


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", required=True, choices=["tensorzero", "litellm"])
    p.add_argument("--upstream", required=True)
    p.add_argument("--point", type=Point, action="append", required=True)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--secs", type=float, default=3.0)
    p.add_argument("--repeat", type=int, default=0)
    a = p.parse_args()

    peer = TensorZero() if a.peer == "tensorzero" else LiteLLM()
    await peer.setup(a.upstream)
    for stream in sorted({pt.stream for pt in a.point}):
        _, error = await call(peer, stream, time.perf_counter_ns())
        if error is not None:
            print(f"{a.peer}: the first call failed: {error!r}", file=sys.stderr)
            return 1
    failed = 0
    for point in a.point:
        result = await measure(peer, a, point)
        if result is None:
            failed += 1
        elif result is SATURATED:
            # One line per point all the same, so the orchestrator can say which was left out.
            print(json.dumps({"saturated": True, "peer": a.peer, "rate": point.rate}), flush=True)
        else:
            print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
