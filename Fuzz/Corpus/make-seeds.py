#!/usr/bin/env python3
"""Writes the committed seed corpus of each fuzz target (Fuzz/Corpus/<target>/seed-*).

Run from anywhere; the files it writes are committed, so the corpus only changes when this script
does. Sources of the values: the payment and answer shapes of the x402 specification
(github.com/coinbase/x402, specs/x402-specification-v2.md and the v1 specification: field names,
the Base Sepolia USDC address, the example payer, signature and nonce), the base64 vectors and the
configuration of this repository's tests (Tests/X402Tests/HeaderCodecTests.swift,
Tests/GatewayTests/ConfigLoaderTests.swift, gateway.yaml.example), and the crafted requests of
issue 14 (Tests/GatewayCoreTests/CanonicalPathTests.swift).
"""
import base64
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

USDC_BASE_SEPOLIA = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
PAYER = "0x857b06519E91e3A54538791bDbb0E22373e36b66"
SIGNATURE = ("0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15"
             "092f9ecab05ded3d6293af148b571c")
NONCE = "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"

authorization = {"from": PAYER, "to": PAY_TO, "value": "1000", "validAfter": "1740672089",
                 "validBefore": "1740672154", "nonce": NONCE}
accepted = {"scheme": "exact", "network": "eip155:84532", "amount": "1000", "asset": USDC_BASE_SEPOLIA,
            "payTo": PAY_TO, "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}}
v2 = {"x402Version": 2,
      "resource": {"url": "https://api.example.com/weather", "description": "Current weather",
                   "mimeType": "application/json"},
      "accepted": accepted, "payload": {"signature": SIGNATURE, "authorization": authorization}}
v2_identifier = dict(v2, extensions={"payment-identifier": {"info": {"required": False, "id": "pay_7d5d747be160e280"}}})
v1 = {"x402Version": 1, "scheme": "exact", "network": "base-sepolia",
      "payload": {"signature": SIGNATURE, "authorization": authorization}}
settle_ok = {"success": True, "transaction": "0x" + "ab" * 32, "network": "eip155:84532", "payer": PAYER}
settle_failed = {"success": False, "errorReason": "insufficient_funds", "transaction": "", "network": "eip155:84532",
                 "payer": PAYER}
verify_ok = {"isValid": True, "payer": PAYER}
verify_refused = {"isValid": False, "invalidReason": "invalid_exact_evm_payload_signature",
                  "invalidMessage": "signature does not match", "payer": PAYER}
supported = {"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"},
                       {"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "extra": {"feePayer": PAYER}}],
             "extensions": ["payment-identifier"], "signers": {"eip155:*": [PAY_TO]}}


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data):
    return base64.b64encode(data)


def write(target, seeds):
    # Only the seed-* files are this script's; found-* files are inputs that once broke a property
    # (kept as regression seeds, see docs/reliability.md).
    folder = os.path.join(HERE, target)
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.startswith("seed-"):
            os.remove(os.path.join(folder, name))
    for n, seed in enumerate(seeds):
        with open(os.path.join(folder, "seed-%02d" % n), "wb") as f:
            f.write(seed)


def http(status_line, headers, body=b""):
    head = status_line + "\r\n" + "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
    return head.encode() + body


def chunked(body, size=7):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


# Payment headers: byte 0 even = header text, odd = the JSON (sent as its base64).
write("FuzzPaymentHeader", [
    b"\x01" + compact(v2), b"\x01" + compact(v1), b"\x01" + compact(v2_identifier),
    b"\x00" + b64(compact(v2)), b"\x00" + b64(compact(v1)), b"\x00" + b64(compact(v2)).rstrip(b"="),
    b"\x01" + json.dumps(v2, indent=2).encode(), b"\x01" + compact(dict(v1, x402Version=3)),
    b"\x01" + compact(dict(v2, accepted=dict(accepted, maxTimeoutSeconds=6e1))),
    b"\x00" + b"eyJkIjoiY2Fmw6kifQ==", b"\x01" + compact(settle_failed),
])

write("FuzzFacilitatorAnswer", [
    compact(verify_ok), compact(verify_refused), compact(settle_ok), compact(settle_failed), compact(supported),
    json.dumps(dict(settle_ok, amount="1000", errorMessage="caf\u00e9 \"\\\b\f\u2028"), indent=1).encode(),
    b'{"isValid":true,"payer":null,"extra":[1,2.5e3,-0,{"a":"\\ud83d\\ude00"}]}',
])

settle_body = compact(settle_ok)
write("FuzzFacilitatorHTTP", [
    b"\x40\x40" + http("HTTP/1.1 200 OK", [("Content-Type", "application/json"), ("Content-Length", len(settle_body))],
                       settle_body),
    b"\x05\x40" + http("HTTP/1.1 200 OK", [("Transfer-Encoding", "chunked")], chunked(settle_body)),
    b"\x40\x40" + http("HTTP/1.1 100 Continue", []) + http("HTTP/1.1 200 OK", [("Content-Length", len(settle_body))],
                                                           settle_body),
    b"\x40\x40" + http("HTTP/1.1 500 Internal Server Error", [("Content-Length", 5)], b"oops!"),
    b"\x40\x40" + http("HTTP/1.1 307 Temporary Redirect", [("Location", "/v2/settle"), ("Content-Length", 0)]),
    b"\x40\x40" + http("HTTP/1.0 200 OK", [("Connection", "close")], settle_body),
    b"\x40\x02" + http("HTTP/1.1 200 OK", [("Content-Length", len(settle_body))], settle_body),
    b"\x40\x40" + http("HTTP/1.1 200 OK", [("Content-Length", len(settle_body))], settle_body)
    + http("HTTP/1.1 200 OK", [("Content-Length", 2)], b"{}"),
])

body = b'{"temperature":21}'
write("FuzzUpstreamResponse", [
    b"\x00\x40" + http("HTTP/1.1 200 OK", [("Content-Type", "application/json"), ("Content-Length", len(body)),
                                           ("Cache-Control", "public, max-age=3600"), ("Vary", "Accept")], body),
    b"\x00\x07" + http("HTTP/1.1 200 OK", [("Transfer-Encoding", "chunked"), ("Connection", "keep-alive, X-Secret"),
                                           ("X-Secret", "1"), ("Keep-Alive", "timeout=5")], chunked(body)),
    b"\x00\x40" + http("HTTP/1.1 200 OK", [("PAYMENT-RESPONSE", "eyJmYWtlIjp0cnVlfQ=="),
                                           ("X-PAYMENT-RESPONSE", "x"), ("PAYMENT-REQUIRED", "y"),
                                           ("Content-Length", 0)]),
    b"\x01\x40" + http("HTTP/1.1 200 OK", [("Content-Length", 1000)]),
    b"\x02\x40" + http("HTTP/1.0 200 OK", [("Surrogate-Control", "max-age=60"), ("Expires", "0")], body),
    b"\x04\x40" + http("HTTP/1.1 204 No Content", [("X-Request-Id", "abc")]),
    b"\x08\x40" + http("HTTP/1.1 304 Not Modified", [("ETag", '"1"')]),
    b"\x00\x40" + http("HTTP/1.1 101 Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade")]),
    b"\x00\x40" + http("HTTP/1.1 100 Continue", []) + http("HTTP/1.1 500 Internal Server Error",
                                                           [("Content-Length", 2), ("Access-Control-Allow-Origin", "*"),
                                                            ("Access-Control-Expose-Headers", "X-A")], b"no"),
])

canonical_targets = [
    "/weather", "/%77eather", "//weather", "/free/../paid/x", "/free/%2E%2E/paid/x", "/paid/x/.", "/caf%c3%a9",
    "/paid%2Fx", "/paid/x;.css", "/paid/x%C0%AF", "/free/%252e%252e/paid/x", "/free/..%3B/weather",
    "/free/%25%32%65%25%32%65/paid/x", "/a%20b?q=1&r=/..", "/paid/x#frag", "/../../paid/x",
]
routes = "@*.example.com GET /api/*\n/paid/:id\n/free/*\nPOST /api/*.json\n/a*b/c\n"
write("FuzzCanonicalPath", [
    bytes([n % 6 | (0x80 if n % 5 == 0 else 0)]) + (routes + "a.example.com:8443\n" + t).encode()
    for n, t in enumerate(canonical_targets)
])

config_test = """listen: 127.0.0.1:8402
publicBaseURL: https://api.example.com/
payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
network: eip155:84532
facilitator:
  url: https://x402.org/facilitator
  timeout: 10s
  headers: { Authorization: "Bearer ${FACILITATOR_TOKEN}" }
upstreams:
  api: { url: ${FUZZ_UPSTREAM}, timeout: 30s, headers: { X-Api-Key: "${API_KEY}" } }
routes:
  - match: "GET /weather"
    upstream: api
    price: "$0.001"
    description: Current weather
  - match: "/public/*"
    upstream: api
    free: true
unmatched: pass
"""
with open(os.path.join(ROOT, "gateway.yaml.example"), "rb") as f:
    example = f.read()
write("FuzzConfig", [
    example, config_test.encode(), config_test.replace("$0.001", "$1,000").encode(),
    config_test.replace("  - match: \"/public/*\"", "  - match: \"GET /weather\"").encode(),
    b"routes: [ {match: /x, upstream: nowhere, free: yes} ]\nlisten: :0\n", b"a: [1, {b: c}\n",
])

write("FuzzRoundTrip", [
    b"\x01\x00\x00" + b"\x02\x03\xe8" + b"\x01\x04USDC\x01\x012" + b"\x2a" + USDC_BASE_SEPOLIA.encode() + b"\x2a" + PAY_TO.encode()
    + b"\x00\x3c\x01\x01\x0fCurrent weather\x10application/json\x1ehttps://api.example.com/weather\x10Payment required",
    b"\x01\x02\x05\x03\x0f\x42\x40\x00\x00\x01\x01\x05caf\xc3\xa9\x02\x08\x0c\x05\"\\</>\x00" * 2,
    b"\x00\x01\x01\x00\x12insufficient_funds\x01\x05\x08\x0c\x7f\xe2\x80\xa8\x42" + b"\x2a" + PAYER.encode()
    + b"\x42" + b"0x" + b"ab" * 32 + b"\x0ceip155:84532\x01\x041000",
])
print("seed corpus written under", HERE)
