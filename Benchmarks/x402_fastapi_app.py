"""The reference contender: the official x402 Python SDK's FastAPI middleware protecting one route.

Configured from the environment by Benchmarks/run.py with the same route, price, payee, network and
facilitator as the gateway. The protected handler returns the same bytes as the gateway's upstream.
Run: uvicorn Benchmarks.x402_fastapi_app:app
"""

import os

from fastapi import FastAPI, Request
from fastapi.responses import Response
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.server import x402ResourceServer

FACILITATOR_URL = os.environ["BENCH_FACILITATOR_URL"]
PAY_TO = os.environ["BENCH_PAY_TO"]
PRICE = os.environ["BENCH_PRICE"]
NETWORK = os.environ["BENCH_NETWORK"]
PATH = os.environ.get("BENCH_PAID_PATH", "/paid")
with open(os.environ["BENCH_BODY_FILE"], "rb") as f:
    BODY = f.read()

server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=FACILITATOR_URL)))
server.register(NETWORK, ExactEvmServerScheme())

routes = {
    f"GET {PATH}": {
        "accepts": {"scheme": "exact", "payTo": PAY_TO, "price": PRICE, "network": NETWORK},
        "description": "benchmark",
        "mimeType": "application/json",
    }
}

app = FastAPI()
x402 = payment_middleware(routes, server)


@app.middleware("http")
async def x402_middleware(request: Request, call_next):
    return await x402(request, call_next)


@app.get(PATH)
async def paid() -> Response:
    return Response(content=BODY, media_type="application/json")
