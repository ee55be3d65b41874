"""Stops a fuzz target's embedded PostgreSQL once the target process is gone.

libFuzzer ends the process with exit() when its time is up, so the target's own clean-up never runs;
this small child polls the target's pid and then stops the server it left behind (the embedded
server adopts and stops a cluster whose owner died).
"""

import asyncio
import os
import sys
import time

from obscura.store.embedded import EmbeddedPostgres


def main(parent_pid: int, data_dir: str) -> None:
    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(1)

    async def stop() -> None:
        pg = EmbeddedPostgres(data_dir, durable=False)
        await pg.start()
        await pg.stop()

    asyncio.run(stop())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
