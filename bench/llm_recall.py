"""CPU per history read from PostgreSQL, the read the llm makes on the first turn of every conversation (and
whenever Redis lost one): papo's `HistoryArchive.recall` against a raw asyncpg `fetch` of the same query on
the same database, measured in one run, round by round.

Each read is of a conversation with no rows, as for a new person: the figure is the read's fixed cost
(checkout, query, decode), not PostgreSQL's. Needs the local PostgreSQL (see libs/testing):

    .venv/bin/python bench/llm_recall.py             # 3,000 reads, 8 at once, 3 rounds
    .venv/bin/python bench/llm_recall.py --quick     # 500 reads, 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import asyncpg

from papo_common.contracts import ConversationRef
from papo_common.db import asyncpg_dsn
from papo_llm.archive import RECALL_ROWS, HistoryArchive
from papo_testing import infra

IN_FLIGHT, POOL = 8, 4
Read = Callable[[ConversationRef], Awaitable[object]]


async def timed(read: Read, reads: int) -> tuple[float, float]:
    """Reads per second, and this process's CPU microseconds per read."""
    people = [ConversationRef(instance="loja", user_id=f"5511{i:09d}@s.whatsapp.net") for i in range(reads)]
    await read(people[0])  # a connection open, as in a running service
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(person: ConversationRef) -> None:
        async with gate:
            await read(person)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(person) for person in people))
    return reads / (time.perf_counter() - started), 1e6 * (time.process_time() - cpu_started) / reads


async def papo(dsn: str, reads: int) -> tuple[float, float]:
    archive = HistoryArchive()
    await archive.open(dsn, max_size=POOL)
    try:
        return await timed(lambda person: archive.recall(person, max_rows=40), reads)
    finally:
        await archive.close()


async def raw(dsn: str, reads: int) -> tuple[float, float]:
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=POOL)
    try:
        return await timed(lambda person: pool.fetch(RECALL_ROWS, person.instance, person.user_id, 40), reads)
    finally:
        await pool.close()


async def run(dsn: str, reads: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    figures: dict[str, list[tuple[float, float]]] = {"papo": [], "raw": []}
    for round_ in range(rounds):  # alternate, so neither side always runs second
        for name in ("papo", "raw") if round_ % 2 == 0 else ("raw", "papo"):
            figures[name].append(await (papo if name == "papo" else raw)(dsn, reads))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("PAPO_BENCH_QUICK")))
    options = parser.parse_args()
    reads, rounds = (500, 1) if options.quick else (options.reads, options.rounds)
    with infra.postgres_database() as database_url:
        figures = asyncio.run(run(asyncpg_dsn(database_url), reads, rounds))
    print(
        f"llm history reads: {reads} per round, {IN_FLIGHT} at once, {rounds} round(s), load {os.getloadavg()[0]:.1f}"
    )
    for name, values in figures.items():
        print(f"  {name:<5} reads/s:     " + "  ".join(f"{rate:8.0f}" for rate, _ in values))
        print(f"  {name:<5} CPU µs/read: " + "  ".join(f"{cpu:8.1f}" for _, cpu in values))
    cpu = {name: min(c for _, c in values) for name, values in figures.items()}
    print(
        f"  CPU per read: papo {cpu['papo']:.0f} µs, raw {cpu['raw']:.0f} µs, ratio {cpu['papo'] / cpu['raw']:.2f}"
    )


if __name__ == "__main__":
    main()
