#!/usr/bin/python3
# ws_fanout.py: WebSocket fan-out of orchfs's event stream, measured from the
# clients' side: C clients (subprotocol orchfs.v1) subscribe to the `metrics`
# channel, a producer writes R usage reports to one worker's
# mma/workers/ID/usage through the mount as fast as it can (os.write, one
# write a report, each report one event), and every client records when it
# receives each event. A benchmark only: it prints numbers; it fails (exit 1)
# only if a client misses an event or something breaks, never for slowness.
#
# Normally run by bench_ws.sh, which starts orchfs and a long-running worker:
#   /usr/bin/python3 tests/bench/ws_fanout.py --port P --token-file STATE/token \
#       --usage MOUNT/mma/workers/ID/usage [--clients 100] [--reports 2000] \
#       [--rounds 3] [--procs 2] [--rate 0] [--server-pid PID]
# Needs python3-websockets (10.x; Debian's /usr/bin/python3).
#
# Each report carries its index in input_tokens (model "fanout-rN"), so the
# producer's log of write times (CLOCK_MONOTONIC, taken just before each
# write) is matched to each client's receive times (the same clock, in other
# processes). Per round: deliveries/s = all deliveries / (last delivery -
# first write); latency p50/p99 over all deliveries = receive - write. The
# report is the median of the rounds. Clients run in --procs processes of
# asyncio; on a 2-core machine they share the cores with orchfs and the
# producer, and a Python client costs more CPU per message than the server,
# so deliveries/s is a lower bound of what orchfs can push: the CPU seconds of
# the clients and of orchfs are printed for each round to show who was busy.
# Flat out, the latency is mostly queueing behind the backlog of a producer
# faster than the fan-out; --rate N paces the producer to N reports/s for the
# latency of a fan-out that keeps up.
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time

try:
    import websockets
except ImportError:
    sys.exit("ws_fanout: needs the python websockets module (Debian: python3-websockets); "
             "run with /usr/bin/python3")


def cpu_seconds(pid):
    """utime+stime of a process (all its threads), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


async def one_client(uri, token, model, reports, recv, ready, info):
    """Subscribes, then fills recv[i] with the receive time of report i until
    it has them all (or is cancelled at the deadline)."""
    got = 0
    async with websockets.connect(uri, subprotocols=["orchfs.v1"],
                                  extra_headers={"Authorization": "Bearer " + token},
                                  compression=None, max_size=1 << 20,
                                  ping_interval=None, close_timeout=2) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["metrics"], "id": 1}))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply.get("id") == 1:
                break
        if not reply.get("ok"):
            raise RuntimeError(f"subscribe refused: {reply}")
        ready()
        tag = ('"model":"%s"' % model).encode()
        try:
            while got < reports:
                msg = await ws.recv()
                t = time.monotonic()
                if isinstance(msg, str):
                    msg = msg.encode()
                if tag not in msg:
                    continue   # another metrics event
                ev = json.loads(msg)
                if ev.get("type") != "usage.reported":
                    continue
                i = ev["data"]["input_tokens"]
                if 0 <= i < reports:
                    if recv[i] == 0.0:
                        got += 1
                    else:
                        info["dups"] += 1
                    recv[i] = t
        except websockets.ConnectionClosed as e:
            info["closed"].append(f"code {e.code} {e.reason!r}")
    return got


def client_proc(conn, uri, token, model, reports, nclients, timeout_s):
    """One process of nclients: sends ("ready") once all are subscribed, waits
    for the go, then sends ("done", receive times and troubles)."""
    async def main():
        n_ready = 0
        all_ready = asyncio.Event()

        def ready():
            nonlocal n_ready
            n_ready += 1
            if n_ready == nclients:
                all_ready.set()

        recvs = [[0.0] * reports for _ in range(nclients)]
        info = {"dups": 0, "closed": []}
        tasks = [asyncio.create_task(one_client(uri, token, model, reports, recvs[k], ready, info))
                 for k in range(nclients)]
        waiter = asyncio.create_task(all_ready.wait())
        loop = asyncio.get_running_loop()
        until = loop.time() + 30
        # a client that ends before all are subscribed has failed
        while not all_ready.is_set() and not any(t.done() for t in tasks):
            left = until - loop.time()
            if left <= 0:
                break
            await asyncio.wait([waiter, *tasks], timeout=left, return_when=asyncio.FIRST_COMPLETED)
        if not all_ready.is_set():
            why = [repr(t.exception()) for t in tasks if t.done() and t.exception()]
            conn.send(("error", f"only {n_ready} of {nclients} clients subscribed: {why[:3]}"))
            for t in (waiter, *tasks):
                t.cancel()
            await asyncio.gather(waiter, *tasks, return_exceptions=True)
            return
        conn.send(("ready", None))
        # the go comes through the pipe: wait in a thread, the loop keeps receiving
        await loop.run_in_executor(None, conn.recv)
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        res = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [repr(r) for r in res
                  if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        if pending:
            errors.append(f"{len(pending)} clients still waiting after {timeout_s}s")
        conn.send(("done", {"recvs": recvs, "dups": info["dups"], "closed": info["closed"],
                            "errors": errors, "cpu": time.process_time()}))

    asyncio.run(main())


def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def median(vals):
    s = sorted(vals)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def run_round(args, rnd, token):
    model = f"fanout-r{rnd}"
    uri = f"ws://127.0.0.1:{args.port}/"
    per = [args.clients // args.procs + (1 if k < args.clients % args.procs else 0)
           for k in range(args.procs)]
    procs, conns = [], []
    for n in per:
        if n == 0:
            continue
        a, b = mp.Pipe()
        p = mp.Process(target=client_proc,
                       args=(b, uri, token, model, args.reports, n, args.timeout))
        p.start()
        procs.append(p)
        conns.append(a)
    try:
        for c in conns:
            if not c.poll(60):
                raise RuntimeError("a client process did not report in 60s")
            kind, what = c.recv()
            if kind != "ready":
                raise RuntimeError(what)
        srv0 = cpu_seconds(args.server_pid) if args.server_pid else None
        fd = os.open(args.usage, os.O_WRONLY)
        pub = [0.0] * args.reports
        for c in conns:
            c.send("go")
        t_start = time.monotonic()
        for i in range(args.reports):
            line = b"model=%s in=%d out=1" % (model.encode(), i)
            if args.rate:
                wait = t_start + i / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            pub[i] = time.monotonic()
            os.write(fd, line)
        t_prod = time.monotonic() - t_start
        os.close(fd)
        results = []
        for c in conns:
            if not c.poll(args.timeout + 60):
                raise RuntimeError("a client process did not finish")
            kind, what = c.recv()
            if kind != "done":
                raise RuntimeError(what)
            results.append(what)
        srv1 = cpu_seconds(args.server_pid) if args.server_pid else None
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    lat, last, missing, dups, closed, errors, ccpu = [], 0.0, 0, 0, [], [], 0.0
    for res in results:
        dups += res["dups"]
        closed += res["closed"]
        errors += res["errors"]
        ccpu += res["cpu"]
        for recv in res["recvs"]:
            for i, t in enumerate(recv):
                if t == 0.0:
                    missing += 1
                    continue
                lat.append(t - pub[i])
                last = max(last, t)
    lat.sort()
    deliveries = len(lat)
    span = last - pub[0] if deliveries else float("nan")
    r = {
        "deliveries": deliveries,
        "expected": args.clients * args.reports,
        "missing": missing, "dups": dups, "closed": closed, "errors": errors,
        "events_per_s": deliveries / span if deliveries else 0.0,
        "span_s": span,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "reports_per_s": args.reports / t_prod,
        "client_cpu_s": ccpu,
        "server_cpu_s": (srv1 - srv0) if srv0 is not None and srv1 is not None else None,
    }
    return r


def main():
    ap = argparse.ArgumentParser(description="orchfs WebSocket fan-out benchmark")
    ap.add_argument("--port", type=int, required=True, help="orchfs --ws port on 127.0.0.1")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--usage", required=True, help="MOUNT/mma/workers/ID/usage of a running worker")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--timeout", type=float, default=60,
                    help="seconds after the first write for every client to get every event")
    ap.add_argument("--rate", type=float, default=0,
                    help="reports per second (0: as fast as the producer can)")
    ap.add_argument("--server-pid", type=int, help="orchfs's pid, for its CPU time")
    args = ap.parse_args()
    if args.clients < 1 or args.reports < 1 or args.rounds < 1 or args.procs < 1 or args.rate < 0:
        sys.exit("ws_fanout: --clients, --reports, --rounds and --procs must be >= 1")
    args.procs = min(args.procs, args.clients)
    with open(args.token_file) as f:
        token = f.read().strip()
    print(f"{args.clients} clients in {args.procs} processes, {args.reports} reports a round, "
          f"{args.rounds} rounds, producer {'%g/s' % args.rate if args.rate else 'flat out'}; "
          f"{os.cpu_count()} CPUs shared by clients, producer and orchfs")
    rounds, bad = [], False
    for rnd in range(1, args.rounds + 1):
        try:
            r = run_round(args, rnd, token)
        except (RuntimeError, OSError) as e:
            print(f"ws_fanout: round {rnd}: {e}", file=sys.stderr)
            return 1
        rounds.append(r)
        scpu = "?" if r["server_cpu_s"] is None else "%.2f" % r["server_cpu_s"]
        print(f"round {rnd}: deliveries={r['deliveries']}/{r['expected']} "
              f"events_per_s={r['events_per_s']:.0f} span_s={r['span_s']:.3f} "
              f"p50_ms={r['p50_ms']:.1f} p99_ms={r['p99_ms']:.1f} max_ms={r['max_ms']:.1f} "
              f"producer_reports_per_s={r['reports_per_s']:.0f} "
              f"cpu_s clients={r['client_cpu_s']:.2f} orchfs={scpu}", flush=True)
        if r["missing"] or r["closed"] or r["errors"]:
            bad = True
            print(f"warning: round {rnd}: {r['missing']} deliveries missing; "
                  f"closed: {r['closed'][:5]}; errors: {r['errors'][:5]}", file=sys.stderr)
        if r["dups"]:
            print(f"warning: round {rnd}: {r['dups']} duplicate deliveries", file=sys.stderr)
    print(f"--- median of {args.rounds} rounds")
    print("events_per_s=%.0f p50_ms=%.1f p99_ms=%.1f producer_reports_per_s=%.0f" % (
        median([r["events_per_s"] for r in rounds]), median([r["p50_ms"] for r in rounds]),
        median([r["p99_ms"] for r in rounds]), median([r["reports_per_s"] for r in rounds])))
    if bad:
        print("warning: not every client received every event", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
