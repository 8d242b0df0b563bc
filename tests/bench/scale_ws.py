#!/usr/bin/python3
# scale_ws.py: the WebSocket part of the load under which bench_scale.sh reads
# the scheduler's tick p99: C clients (subprotocol orchfs.v1) subscribed to
# every kept channel, reading whatever comes. It is load, not a measurement:
# it prints only how many clients stayed and how many frames they got, and
# fails (exit 1) if a client cannot subscribe or is closed by the server.
#
#   /usr/bin/python3 tests/bench/scale_ws.py --port P --token-file STATE/token \
#       --ready FILE [--clients 100] [--max-s 900]
# Writes FILE once every client is subscribed, then runs until SIGTERM (or
# --max-s, so it ends by itself). Needs python3-websockets (Debian's).
import argparse
import asyncio
import json
import signal
import sys

try:
    import websockets
except ImportError:
    sys.exit("scale_ws: needs the python websockets module (Debian: python3-websockets); "
             "run with /usr/bin/python3")

CHANNELS = ["workers", "dag", "pipeline", "context", "metrics", "system"]


async def one_client(uri, token, subscribed, counts, k, stop):
    async with websockets.connect(uri, subprotocols=["orchfs.v1"],
                                  extra_headers={"Authorization": "Bearer " + token},
                                  compression=None, max_size=1 << 24,
                                  ping_interval=None, close_timeout=2) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": CHANNELS, "id": 1}))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply.get("id") == 1:
                break
        if not reply.get("ok"):
            raise RuntimeError(f"subscribe refused: {reply}")
        subscribed()
        while not stop.is_set():
            recv = asyncio.ensure_future(ws.recv())
            halt = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([recv, halt], return_when=asyncio.FIRST_COMPLETED)
            if recv not in done:
                recv.cancel()
                await asyncio.gather(recv, return_exceptions=True)
                break
            halt.cancel()
            recv.result()
            counts[k] += 1


async def main(args):
    with open(args.token_file) as f:
        token = f.read().strip()
    uri = f"ws://127.0.0.1:{args.port}/"
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    n_ready = 0
    all_ready = asyncio.Event()

    def subscribed():
        nonlocal n_ready
        n_ready += 1
        if n_ready == args.clients:
            all_ready.set()

    counts = [0] * args.clients
    tasks = [asyncio.create_task(one_client(uri, token, subscribed, counts, k, stop))
             for k in range(args.clients)]
    waiter = asyncio.create_task(all_ready.wait())
    until = loop.time() + 60
    while not all_ready.is_set() and not any(t.done() for t in tasks) and loop.time() < until:
        await asyncio.wait([waiter, *tasks], timeout=until - loop.time(),
                           return_when=asyncio.FIRST_COMPLETED)
    if not all_ready.is_set():
        why = [repr(t.exception()) for t in tasks if t.done() and t.exception()]
        print(f"scale_ws: only {n_ready} of {args.clients} clients subscribed: {why[:3]}",
              file=sys.stderr)
        stop.set()
        for t in (waiter, *tasks):
            t.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
        return 1
    with open(args.ready, "w") as f:
        f.write("ready\n")
    try:
        await asyncio.wait_for(stop.wait(), args.max_s)
    except asyncio.TimeoutError:
        stop.set()
    # a client that ends before the stop raises (ConnectionClosed), so the
    # errors are the clients that did not last
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    print(f"ws_clients={args.clients} ws_frames={sum(counts)} ws_failed={len(errors)}")
    if errors:
        print(f"scale_ws: {len(errors)} clients ended early: {errors[:3]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="WebSocket clients as load for bench_scale.sh")
    ap.add_argument("--port", type=int, required=True, help="orchfs --ws port on 127.0.0.1")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--ready", required=True, help="written once every client is subscribed")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--max-s", type=float, default=900, help="ends by itself after this")
    sys.exit(asyncio.run(main(ap.parse_args())))
