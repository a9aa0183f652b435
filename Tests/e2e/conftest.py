"""Fixtures of the end-to-end rig: a local chain with a USDC-like token, the SDK's facilitator,
a recording upstream, and gateways started from YAML text. Everything binds 127.0.0.1 port 0.

Session-scoped, in dependency order:
  run_dir          logs and configs ($E2E_RUN_DIR, else a pytest temp dir)
  chain            rig.chain process + web3 handle; the token is initialised and buyers funded
  facilitator      rig.facilitator process; .stop() / .start() (same port), .stats(), .set_settle_delay()
  upstream         rig.upstream process; .requests(path, tag) lists what it received
  gateway_factory  start(yaml_text) → a running gateway; ${E2E_*} in the text are filled in
  gateway          the standard gateway (GATEWAY_YAML) used by the scenarios
Accounts: buyer and buyer2 (100 USDC each), poor_buyer (nothing), payee. Helper: balance_of(address).
Per test: tag, a unique "t=..." query string to find that test's requests in the upstream's record.

X402_E2E_VARIANT=tls-facilitators runs the same scenarios with every gateway behind TLS on its own
listener (a CA made for the run, trusted by the test process through SSL_CERT_FILE and
REQUESTS_CA_BUNDLE; gateway.url is https://localhost:PORT) and with two facilitators: first one that
is down (its port refuses connections), then the official SDK's. Modules that cannot take part are
deselected, not skipped (see VARIANT_EXCLUDED).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import sys
import uuid
from pathlib import Path

import pytest
import requests as http
from eth_account import Account
from web3 import Web3

from rig.constants import ADDRESSES, GATEWAY_YAML_HEAD, KEYS, TOKEN2_ADDRESS, TRANSFER_TOPIC, USDC_ADDRESS
from rig.contracts import deploy_proxies
from rig.pki import make_ca, make_leaf
from rig.procs import Process
from rig.token import compiled_token

HERE = Path(__file__).resolve().parent
USDC = 10**6
BUYER_FUNDS = 100 * USDC

# Routes the scenarios use. Prices: $0.001 = 1000 units, $0.01 = 10000, $0.002 = 2000.
GATEWAY_YAML = GATEWAY_YAML_HEAD + """\
routes:
  - match: "GET /weather"
    price: "$0.001"
    description: Current weather
    mimeType: application/json
  - match: "GET /cheap"
    price: "$0.001"
  - match: "GET /dear"
    price: "$0.01"
  - match: "GET /boom"
    price: "$0.001"
  - match: "GET /events"
    price: "$0.002"
    settlement: before
    mimeType: text/event-stream
  - match: "/public/*"
    free: true
unmatched: deny
"""

_processes: list[Process] = []  # for log tails on failure

VARIANT = os.environ.get("X402_E2E_VARIANT", "")
if VARIANT not in ("", "tls-facilitators"):
    raise pytest.UsageError(f"X402_E2E_VARIANT={VARIANT!r}: expected tls-facilitators or nothing")
# Modules the TLS variant leaves out, and why: Chromium trusts its own NSS store, not the run's CA;
# nginx's shared cache proxies to the gateway over plain http; test_tls makes its own TLS gateway;
# test_rig checks the rig, not the gateway.
VARIANT_EXCLUDED = ("test_paywall_browser.py", "test_passes_browser.py", "test_dashboard_browser.py",
                    "test_cross_origin_browser.py", "test_shared_cache.py", "test_tls.py", "test_rig.py")
# The facilitator block of GATEWAY_YAML_HEAD, which the variant replaces with a list.
ONE_FACILITATOR = "facilitator:\n  url: ${E2E_FACILITATOR_URL}\n  timeout: 20s\n"
assert ONE_FACILITATOR in GATEWAY_YAML_HEAD


def pytest_collection_modifyitems(config, items):
    if VARIANT:
        kept = [item for item in items if item.path.name not in VARIANT_EXCLUDED]
    else:
        kept = [item for item in items if item.path.name != "test_variant.py"]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def _refused_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

# The gateway runs as an ordinary user, the way it is deployed. When the suite itself runs as root
# (CI, containers) it starts the gateway as $E2E_GATEWAY_USER (default: nobody).
GATEWAY_USER = (os.environ.get("E2E_GATEWAY_USER") or "nobody") if os.geteuid() == 0 else None


def _python_process(name: str, module: str, args: list[str], run_dir: Path) -> Process:
    proc = Process(name, [sys.executable, "-u", "-m", module, *args], run_dir / f"{name}.log",
                   ready=r"READY (http://\S+)", cwd=HERE)
    _processes.append(proc)
    return proc


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for proc in _processes:
            report.sections.append((f"{proc.name} log (tail)", proc.tail(25)))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    path = Path(os.environ["E2E_RUN_DIR"]) if os.environ.get("E2E_RUN_DIR") else tmp_path_factory.mktemp("e2e")
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # the gateway's user reads its configuration here
    return path


class Chain:
    """The chain as the tests see it: through JSON-RPC, like everybody else."""

    def __init__(self, url: str):
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        self.token = self.w3.eth.contract(address=USDC_ADDRESS, abi=compiled_token()["abi"])
        self.token2 = self.w3.eth.contract(address=TOKEN2_ADDRESS, abi=compiled_token()["abi"])

    def balance_of(self, address: str, token=None) -> int:
        return (token or self.token).functions.balanceOf(Web3.to_checksum_address(address)).call()

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def receipt(self, tx_hash: str):
        return self.w3.eth.get_transaction_receipt(tx_hash)

    def authorization_used(self, authorizer: str, nonce: str) -> bool:
        return self.token.functions.authorizationState(Web3.to_checksum_address(authorizer), bytes.fromhex(nonce[2:])).call()

    def transfers(self, since_block: int, sender: str | None = None, receiver: str | None = None) -> list[dict]:
        """Token Transfer events mined after block `since_block`."""
        logs = self.w3.eth.get_logs({"fromBlock": since_block + 1, "toBlock": "latest",
                                     "address": USDC_ADDRESS, "topics": [TRANSFER_TOPIC]})
        found = []
        for log in logs:
            event = self.token.events.Transfer().process_log(log)
            entry = {"from": event["args"]["sender"], "to": event["args"]["receiver"],
                     "value": event["args"]["value"], "tx": "0x" + log["transactionHash"].hex().removeprefix("0x")}
            if sender and entry["from"].lower() != sender.lower():
                continue
            if receiver and entry["to"].lower() != receiver.lower():
                continue
            found.append(entry)
        return found

    def transact(self, key: str, call) -> dict:
        account = Account.from_key(key)
        tx = call.build_transaction({"from": account.address, "nonce": self.w3.eth.get_transaction_count(account.address),
                                     "gas": 300_000, "gasPrice": self.w3.eth.gas_price})
        tx_hash = self.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        assert receipt["status"] == 1, receipt
        return receipt


@pytest.fixture(scope="session")
def chain(run_dir) -> Chain:
    proc = _python_process("chain", "rig.chain", [], run_dir)
    url = proc.start(timeout=120).group(1)  # the first run compiles the token
    try:
        chain = Chain(url)
        chain.transact(KEYS["minter"], chain.token.functions.initialize(ADDRESSES["minter"]))
        for name in ("buyer", "buyer2"):
            chain.transact(KEYS["minter"], chain.token.functions.mint(ADDRESSES[name], BUYER_FUNDS))
        # Permit2 and the x402 proxies at their canonical addresses; a second ERC-20; the Permit2 buyers.
        deploy_proxies(chain.w3, KEYS["minter"])
        chain.transact(KEYS["minter"], chain.token2.functions.initialize(ADDRESSES["minter"]))
        for name in ("permit2-buyer", "unapproved-buyer"):
            for token in (chain.token, chain.token2):
                chain.transact(KEYS["minter"], token.functions.mint(ADDRESSES[name], BUYER_FUNDS))
        yield chain
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def balance_of(chain):
    return chain.balance_of


class Facilitator:
    def __init__(self, rpc_url: str, run_dir: Path):
        self.rpc_url, self.run_dir = rpc_url, run_dir
        self.port = 0  # chosen by the first start, then kept: the gateway's configuration names it
        self.proc = _python_process("facilitator", "rig.facilitator", [], run_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc.argv = [sys.executable, "-u", "-m", "rig.facilitator", "--rpc", self.rpc_url, "--port", str(self.port)]
        url = self.proc.start(timeout=60).group(1)
        self.port = int(url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.stop()

    @property
    def running(self) -> bool:
        return self.proc.running

    def stats(self) -> dict:
        """Calls counted since this process started; settle_started/settle_finished are times."""
        return http.get(f"{self.url}/__stats", timeout=10).json()

    def set_settle_delay(self, seconds: float) -> None:
        """Every later settle of this process waits `seconds` first (a restart resets it)."""
        http.post(f"{self.url}/__settle_delay", json={"seconds": seconds}, timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def facilitator(chain, run_dir) -> Facilitator:
    fac = Facilitator(chain.url, run_dir)
    fac.start()
    yield fac
    fac.stop()


class Upstream:
    def __init__(self, url: str):
        self.url = url

    def requests(self, path: str | None = None, tag: str | None = None) -> list[dict]:
        """Requests received, optionally only those for `path` whose query string contains `tag`."""
        seen = http.get(f"{self.url}/__requests", timeout=10).json()
        return [r for r in seen if (path is None or r["path"] == path) and (tag is None or tag in r["query"])]


@pytest.fixture(scope="session")
def upstream(run_dir) -> Upstream:
    proc = _python_process("upstream", "rig.upstream", [], run_dir)
    url = proc.start(timeout=30).group(1)
    yield Upstream(url)
    proc.stop()


_binary_copy: list[str] = []


def gateway_binary() -> str:
    path = os.environ.get("X402_GATEWAY_BIN")
    if not path:
        pytest.exit("X402_GATEWAY_BIN is not set: run the suite through scripts/e2e.sh", returncode=4)
    if not os.access(path, os.X_OK):
        pytest.exit(f"X402_GATEWAY_BIN={path} is not an executable", returncode=4)
    if GATEWAY_USER is None:
        return path
    # The checkout may sit where the gateway's user cannot reach it (under /root): run a copy in a
    # folder anyone may read.
    if not _binary_copy:
        import shutil
        import tempfile
        folder = Path(os.environ.get("E2E_RUN_DIR") or tempfile.mkdtemp(prefix="x402-e2e.")) / "bin"
        folder.mkdir(parents=True, exist_ok=True)
        folder.parent.chmod(0o755)
        folder.chmod(0o755)
        copy = folder / "x402-gateway"
        shutil.copy2(path, copy)
        copy.chmod(0o755)
        _binary_copy.append(str(copy))
    return _binary_copy[0]


def gateway_port(log_text: str) -> int | None:
    """The bound port from the gateway's "gateway listening" log line (JSON or text log format)."""
    for line in log_text.splitlines():
        if "gateway listening" not in line:
            continue
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:  # a line still being written
                continue
            if entry.get("msg") == "gateway listening":
                return int(entry.get("port") or entry["address"].rsplit(":", 1)[1])
        match = re.search(r"address=\S+:(\d+)", line)
        if match:
            return int(match.group(1))
    return None


class Gateway:
    def __init__(self, proc: Process, port: int, tls: bool = False):
        self.proc, self.port = proc, port
        # Under TLS the name the certificate holds, so that clients check it.
        self.origin = "https://localhost" if tls else "http://127.0.0.1"
        self.url = f"{self.origin}:{port}"

    def moved_to(self, port: int) -> None:
        """After a restart on a new port."""
        self.port, self.url = port, f"{self.origin}:{port}"

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture(scope="session")
def gateway_factory(facilitator, upstream, run_dir):
    """start(yaml_text, name=..., env=...) → Gateway. The text may use ${E2E_FACILITATOR_URL},
    ${E2E_UPSTREAM_URL} and ${E2E_PAY_TO} (the gateway's own ${ENV} substitution fills them), and any
    variable of `env` (added to the gateway's environment)."""
    binary = gateway_binary()
    started: list[Gateway] = []
    tls_line = None
    if VARIANT:
        pki = run_dir / "pki-variant"
        ca = make_ca(pki)
        make_leaf(pki, "gateway")
        os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
        tls_line = f'tls: {{ cert: "{pki}/gateway.pem", key: "{pki}/gateway.key" }}\n'
        down = f"http://127.0.0.1:{_refused_port()}"

    def start(yaml_text: str, name: str | None = None, env: dict | None = None) -> Gateway:
        name = name or f"gateway-{len(started) + 1}"
        config = run_dir / f"{name}.yaml"
        tls = False
        if VARIANT:
            yaml_text = yaml_text.replace(ONE_FACILITATOR, "facilitators:\n"
                                          f'  - {{ url: "{down}", timeout: 5s }}\n'
                                          '  - { url: "${E2E_FACILITATOR_URL}", timeout: 20s }\n')
            if "\ntls:" not in "\n" + yaml_text:
                yaml_text += tls_line
                tls = True
        if "storage:" not in yaml_text:
            # The default SQLite ledger, in a folder the gateway's own user may write.
            state = run_dir / f"{name}-state"
            state.mkdir(exist_ok=True)
            if GATEWAY_USER is not None:
                account = pwd.getpwnam(GATEWAY_USER)
                os.chown(state, account.pw_uid, account.pw_gid)
            yaml_text += f'storage: {{ sqlite: "{state}/ledger.db" }}\n'
        config.write_text(yaml_text)
        config.chmod(0o644)  # readable by the gateway's own user
        env = dict(os.environ, E2E_FACILITATOR_URL=facilitator.url, E2E_UPSTREAM_URL=upstream.url,
                   E2E_PAY_TO=ADDRESSES["payee"], **(env or {}))
        proc = Process(name, [binary, "run", "--config", str(config), "--log-level", "info"], run_dir / f"{name}.log",
                       ready=gateway_port, env=env, user=GATEWAY_USER)
        _processes.append(proc)
        port = proc.start(timeout=30)
        # Run the way it is deployed: never as root (root hides privilege bugs).
        assert proc.uid() != 0, f"{name} runs as root"
        gateway = Gateway(proc, port, tls=tls)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def gateway(gateway_factory) -> Gateway:
    return gateway_factory(GATEWAY_YAML, name="gateway")


@pytest.fixture(scope="session")
def buyer():
    return Account.from_key(KEYS["buyer"])


@pytest.fixture(scope="session")
def buyer2():
    return Account.from_key(KEYS["buyer2"])


@pytest.fixture(scope="session")
def poor_buyer():
    return Account.from_key(KEYS["poor"])


@pytest.fixture(scope="session")
def payee() -> str:
    return ADDRESSES["payee"]


@pytest.fixture
def tag() -> str:
    """A unique query-string marker, so the upstream's record can be filtered per test."""
    return "t=" + uuid.uuid4().hex[:12]
