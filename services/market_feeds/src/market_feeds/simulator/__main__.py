"""`python -m market_feeds.simulator [--port 58040] [--rate 20]`: the exchange simulator,
streaming a generated session on every venue until SIGTERM (demo and benchmarks)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from market_feeds.simulator.server import ExchangeSimulator


async def run(args: argparse.Namespace) -> None:
    sim = ExchangeSimulator(host=args.host, port=args.port, burst=args.burst, seed=args.seed)
    await sim.start()
    market = (
        asyncio.create_task(sim.run_market(trades_per_s=args.rate, tick_s=args.tick_s))
        if args.rate
        else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"exchange simulator listening on ws://{args.host}:{sim.port}", flush=True)
    await stop.wait()
    if market is not None:
        market.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await market
    await sim.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="market_feeds.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=58040)
    parser.add_argument("--rate", type=float, default=5.0, help="trades/s per symbol per venue")
    parser.add_argument("--tick-s", type=float, default=0.1, help="emit every this many s")
    parser.add_argument("--burst", type=int, default=0, help="trades per symbol at subscribe")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    cli()
