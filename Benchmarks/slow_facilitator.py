"""A facilitator stub with a network's latency, for the deferred-settlement scenario (8).

    python slow_facilitator.py --port P [--verify-ms 200] [--settle-ms 2000]

POST /verify answers valid after --verify-ms, POST /settle answers success after --settle-ms (the
time a real facilitator waits for a block), GET /supported at once. Plain asyncio, HTTP/1.1
keep-alive: thousands of settlements may wait at once. It checks nothing but keeps books:
GET /__stats → {"verify", "settle", "distinct", "duplicates", "late"}: settle calls, distinct
payments (payer + nonce), payments sent to /settle more than once, and settlements answered at or
after the authorization's validBefore.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

NETWORK = "eip155:84532"
PAYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
SUPPORTED = json.dumps({"kinds": [{"x402Version": 2, "scheme": "exact", "network": NETWORK}], "extensions": [], "signers": {}})
VERIFIED = json.dumps({"isValid": True, "payer": PAYER})
SETTLED = json.dumps({"success": True, "transaction": "0x" + "ab" * 32, "network": NETWORK, "payer": PAYER})

stats = {"verify": 0, "settle": 0, "distinct": 0, "duplicates": 0, "late": 0}
seen: set[bytes] = set()


FIELD = re.compile(rb'"(from|nonce|validBefore)"\s*:\s*"([^"]*)"')


def book_settlement(body: bytes) -> int | None:
    """Counts the payment; returns its validBefore (unix seconds) when readable. The three fields
    are read with a regular expression: a full JSON parse per settlement would cost this stub more
    CPU than the gateway spends, on the same cores."""
    fields = {name: value for name, value in FIELD.findall(body)}
    if len(fields) != 3:
        return None
    key = (fields[b"from"] + fields[b"nonce"]).lower()
    if key in seen:
        stats["duplicates"] += 1
    else:
        seen.add(key)
        stats["distinct"] += 1
    return int(fields[b"validBefore"])


async def respond(writer: asyncio.StreamWriter, status: int, body: str) -> None:
    data = body.encode()
    writer.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(data), data))
    await writer.drain()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, verify_s: float, settle_s: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if path.endswith("/verify"):
                stats["verify"] += 1
                await asyncio.sleep(verify_s)
                await respond(writer, 200, VERIFIED)
            elif path.endswith("/settle"):
                stats["settle"] += 1
                valid_before = book_settlement(body)
                await asyncio.sleep(settle_s)
                if valid_before is not None and time.time() >= valid_before:
                    stats["late"] += 1
                await respond(writer, 200, SETTLED)
            elif path.endswith("/supported"):
                await respond(writer, 200, SUPPORTED)
            elif path == "/__stats":
                await respond(writer, 200, json.dumps(stats))
            else:
                await respond(writer, 404, "{}")
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--verify-ms", type=float, default=200)
    parser.add_argument("--settle-ms", type=float, default=2000)
    args = parser.parse_args()
    server = await asyncio.start_server(lambda r, w: serve(r, w, args.verify_ms / 1000, args.settle_ms / 1000),
                                        "127.0.0.1", args.port, backlog=4096, limit=1 << 20)
    print(f"READY http://127.0.0.1:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop  # in the bench venv (uvicorn's); plain asyncio otherwise

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
