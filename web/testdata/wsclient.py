"""Echo through a WebSocket server with the python3-websockets client.

Usage: python3 wsclient.py ws://HOST:PORT/PATH
Prints one line per check and exits 1 on the first difference.
"""
import asyncio
import os
import sys

import websockets


async def main(url):
    async with websockets.connect(url, max_size=2 ** 21, compression=None) as ws:
        text = "héllo from python3-websockets ✓"
        await ws.send(text)
        got = await ws.recv()
        if got != text:
            sys.exit(f"text: sent {text!r}, got {got!r}")
        print("text ok")

        data = bytes(range(256)) + os.urandom(100000)
        await ws.send(data)
        got = await ws.recv()
        if got != data:
            sys.exit(f"binary: sent {len(data)} bytes, got {len(got)} differing")
        print("binary ok")

        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        print("pong ok")

        await ws.close(code=4001, reason="bye")
        print(f"closed {ws.close_code} {ws.close_reason}")


asyncio.run(main(sys.argv[1]))
