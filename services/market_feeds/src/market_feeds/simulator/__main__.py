"""`python -m market_feeds.simulator [--port 58040] [--rate 20]`: the exchange simulator,
streaming a generated session on every venue until SIGTERM (demo and benchmarks)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time

from market_feeds.simulator.server import ExchangeSimulator


def session_first_trade_id(pinned: int | None, *, now_ns: int | None = None) -> int:
    """The first trade id of this session: `pinned`, or the start time in µs.

    A real venue never reuses a trade id, and Pulse's trade `event_id` is built from it: a
    session that restarted at the same id would archive its trades under an earlier session's
    ids, and the archive's views would drop them as repeats. Started from the clock, a later
    session's ids are always higher (and stay below 2**53 with the Coinbase sequence at 3×).
    """
    if pinned is not None:
        return pinned
    return (time.time_ns() if now_ns is None else now_ns) // 1000


async def run(args: argparse.Namespace) -> None:
    sim = ExchangeSimulator(
        host=args.host,
        port=args.port,
        burst=args.burst,
        seed=args.seed,
        first_trade_id=session_first_trade_id(args.first_trade_id),
    )
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
    parser.add_argument(
        "--first-trade-id",
        type=int,
        default=None,
        help="each symbol's first trade id (default: the start time in µs, unique per session)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    cli()
