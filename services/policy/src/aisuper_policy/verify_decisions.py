"""Verifies policy's decision log: `python -m aisuper_policy.verify_decisions --database-url URL`.

Exit status 0 when every record's hash and link hold, 1 (naming the first
broken record) when not, 2 when the database cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from aisuper.platform.db import Database
from aisuper_policy.decision_log import Verification, verify


async def check(database_url: str) -> Verification:
    db = Database(database_url, pool_size=1)
    try:
        async with db.read() as session:
            return await verify(session)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aisuper_policy.verify_decisions")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("AISUPER_POLICY_DATABASE_URL"),
        help="policy's database (default: $AISUPER_POLICY_DATABASE_URL)",
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url is required")
    try:
        result = asyncio.run(check(args.database_url))
    except Exception as error:  # unreadable database, missing tables
        print(f"cannot read the decision log: {error}", file=sys.stderr)
        return 2
    if result.ok:
        print(f"ok: {result.checked} decision records, the chain holds")
        return 0
    if result.broken_id:
        print(
            f"broken at record {result.broken_id} (sequence {result.broken_seq}): {result.reason}",
            file=sys.stderr,
        )
    else:
        print(f"broken: {result.reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
