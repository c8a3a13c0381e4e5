"""The stack under load: the test agent in its own process on uvloop, as `make bench` runs it.

    python tests/perf/sut_agent.py PORT [--users N --password PW]

Prints "ready" once listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.agent import Agent, AgentConfig

from pbx.runtime import tune_gc
from pbx.transport import install_best_loop


async def main(port: int, users: int, password: str) -> None:
    accounts = {f"u{i:07d}": password for i in range(users)}
    agent = Agent(AgentConfig(users=accounts, algorithms=("MD5",)))
    await agent.start("UDP", port)
    tune_gc()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await agent.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--password", default="secret")
    args = parser.parse_args()
    install_best_loop()
    asyncio.run(main(args.port, args.users, args.password))
