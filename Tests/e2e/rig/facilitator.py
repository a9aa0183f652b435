"""An x402 facilitator made of the official Python SDK's own facilitator classes.

    python -m rig.facilitator --rpc URL [--port 0]   prints "READY http://127.0.0.1:PORT"

POST /verify and POST /settle take {"x402Version", "paymentPayload", "paymentRequirements"} and
answer the SDK's VerifyResponse / SettleResponse; GET /supported answers its SupportedResponse.
The exact EVM scheme (EIP-3009 and Permit2) and the upto scheme are registered for the local
network only (eip155:84532 for v2, base-sepolia for v1), signing with the funded facilitator key;
`/supported` announces that key's address in the upto kind's `extra.facilitatorAddress`.

Test controls (not part of any facilitator protocol): GET /__stats counts calls, lists the authorization nonce of every settle, and records when
each settle began and ended; POST /__settle_delay {"seconds": s} makes every later settle wait s
seconds before it starts, so a test can stop the facilitator while a settlement is in flight.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from x402 import SchemeNotFoundError, x402FacilitatorSync
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.mechanisms.evm.exact.v1.facilitator import ExactEvmSchemeV1 as ExactEvmFacilitatorSchemeV1
from x402.mechanisms.evm.upto import UptoEvmFacilitatorScheme
from x402.mechanisms.evm.signers import FacilitatorWeb3Signer
from x402.schemas.helpers import parse_payment_payload, parse_payment_requirements

from .constants import KEYS, NETWORK, NETWORK_V1
from .httpserver import Handler as BaseHandler, Server, arguments, serve


def build_facilitator(rpc_url: str) -> x402FacilitatorSync:
    signer = FacilitatorWeb3Signer(
        private_key=KEYS["facilitator"], rpc_url=rpc_url, confirmation_timeout_seconds=30
    )
    facilitator = x402FacilitatorSync()
    facilitator.register([NETWORK], ExactEvmFacilitatorScheme(signer))
    facilitator.register([NETWORK], UptoEvmFacilitatorScheme(signer))
    facilitator.register_v1([NETWORK_V1], ExactEvmFacilitatorSchemeV1(signer))
    return facilitator


def dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def make_server(host: str, port: int, facilitator: x402FacilitatorSync) -> Server:
    stats = {"verify": 0, "settle": 0, "supported": 0, "settle_started": [], "settle_finished": [], "settle_nonces": []}
    control = {"settle_delay": 0.0}
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            stats[name] += 1

    class Handler(BaseHandler):
        def do_GET(self):
            if self.path == "/supported":
                count("supported")
                self.send_json(200, dump(facilitator.get_supported()))
            elif self.path == "/__stats":
                with lock:
                    self.send_json(200, json.loads(json.dumps(stats)))
            else:
                self.send_json(404, {"error": "not found"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/__settle_delay":
                control["settle_delay"] = float(json.loads(body)["seconds"])
                self.send_json(200, control)
                return
            if self.path not in ("/verify", "/settle"):
                self.send_json(404, {"error": "not found"})
                return
            op = self.path[1:]
            count(op)
            try:
                request = json.loads(body)
                payload = parse_payment_payload(request["paymentPayload"])
                requirements = parse_payment_requirements(payload.x402_version, request["paymentRequirements"])
            except Exception as e:
                self.send_json(400, {"error": f"invalid request: {e}"})
                return
            if op == "settle":
                inner = request["paymentPayload"].get("payload") or {}
                nonce = (inner.get("authorization") or inner.get("permit2Authorization") or {}).get("nonce")
                with lock:
                    stats["settle_started"].append(time.time())
                    stats["settle_nonces"].append(str(nonce).lower())
                time.sleep(control["settle_delay"])
            try:
                result = getattr(facilitator, op)(payload, requirements)
            except SchemeNotFoundError as e:
                self.send_json(400, {"error": str(e)})
                return
            except Exception as e:
                print(f"facilitator: {op} raised {e!r}", file=sys.stderr, flush=True)
                self.send_json(500, {"error": str(e)})
                return
            if op == "settle":
                with lock:
                    stats["settle_finished"].append(time.time())
            out = dump(result)
            print(f"facilitator: {op} v{payload.x402_version} -> {json.dumps(out)}", file=sys.stderr, flush=True)
            self.send_json(200, out)

    return Server((host, port), Handler)


def main() -> None:
    args = arguments(__doc__, lambda parser: parser.add_argument("--rpc", required=True))
    serve(make_server(args.host, args.port, build_facilitator(args.rpc)), args.host)


if __name__ == "__main__":
    main()
