"""The raw picows echo server of the baseline (performance.md): ``python -m bench.echo_server PORT``."""

from __future__ import annotations

import asyncio
import sys

import picows


class _Echo(picows.WSListener):
    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.BINARY:
            transport.send(picows.WSMsgType.BINARY, frame.get_payload_as_memoryview())
        elif frame.msg_type == picows.WSMsgType.CLOSE:
            transport.disconnect()


async def _main(port: int) -> None:
    server = await picows.ws_create_server(lambda _request: _Echo(), "127.0.0.1", port,
                                           read_buffer_init_size=1024)
    print("ready", flush=True)
    async with server:
        await asyncio.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 120.0)  # stops by itself


if __name__ == "__main__":
    import uvloop
    uvloop.run(_main(int(sys.argv[1])))
