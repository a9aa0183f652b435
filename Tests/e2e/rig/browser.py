"""A real headless Chromium, driven over the DevTools protocol, with a test EIP-1193 wallet.

    browser = Browser.start(run_dir)          # launches `chromium --headless --remote-debugging-port=0`
    page = browser.new_page(wallet)           # a tab whose window.ethereum is `wallet`
    page.navigate(url); page.click("#pay"); page.wait_until("...js condition...")
    page.screenshot(path)

The wallet lives in Python: the page gets a small provider object (injected with
Page.addScriptToEvaluateOnNewDocument, so it exists before any page script runs, and announced
through EIP-6963) whose `request()` calls a CDP binding; the test process answers each call
(accounts, chain id, chain switch, eth_call against the rig's chain, eth_signTypedData_v4 signed
with eth-account) and resolves the page's promise. Nothing in the page is stubbed: the paywall
talks to the gateway, the gateway to the rig's facilitator, the facilitator to the chain.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import shutil
import time
from pathlib import Path

from eth_account import Account
from websockets.sync.client import connect

from .procs import Process

BINDING = "__x402TestWallet"

PROVIDER_JS = """
(() => {
  const pending = new Map();
  let next = 0;
  const listeners = {};
  const provider = {
    isTestWallet: true,
    request(args) {
      const method = args && args.method, params = (args && args.params) || [];
      return new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, { resolve, reject });
        window.%(binding)s(JSON.stringify({ id, method, params }));
      });
    },
    on(name, fn) { (listeners[name] = listeners[name] || []).push(fn); return provider; },
    removeListener(name, fn) { listeners[name] = (listeners[name] || []).filter(f => f !== fn); return provider; },
  };
  Object.defineProperty(window, '__x402TestWalletAnswer', { value(id, result, error) {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    if (error) { const e = new Error(error.message); e.code = error.code; p.reject(e); } else { p.resolve(result); }
  } });
  window.ethereum = provider;
  const detail = Object.freeze({
    info: Object.freeze({ uuid: '6f1c1a52-7d0e-4b8e-9d63-0c4b1f3f2a11', name: 'Test Wallet',
                          icon: 'data:image/svg+xml,%%3Csvg xmlns=%%22http://www.w3.org/2000/svg%%22/%%3E', rdns: 'test.x402.wallet' }),
    provider,
  });
  const announce = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', { detail }));
  window.addEventListener('eip6963:requestProvider', announce);
  announce();
})();
""" % {"binding": BINDING}


def chromium_binary() -> str | None:
    for name in (os.environ.get("E2E_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class CDPError(RuntimeError):
    pass


class WalletError(Exception):
    """An EIP-1193 error the wallet answers with (4001 = the user rejected)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class BrowserWallet:
    """An EIP-1193 wallet holding one account. It starts on `start_chain_id` (like a real wallet
    left on another network), switches on request to the chains it knows, reads token balances
    from the rig's chain and signs typed data with the account's key. `reject` lists the methods
    the "user" refuses (answered with error 4001)."""

    def __init__(self, account, chain, chain_id: int, start_chain_id: int = 1, reject: tuple[str, ...] = ()):
        self.account, self.chain = account, chain
        self.known_chains = {start_chain_id, chain_id}
        self.current_chain = start_chain_id
        self.reject = set(reject)
        self.calls: list[dict] = []
        self.signed: list[dict] = []

    def methods(self) -> list[str]:
        return [c["method"] for c in self.calls]

    def handle(self, method: str, params: list):
        self.calls.append({"method": method, "params": params})
        if method in self.reject:
            raise WalletError(4001, "User rejected the request.")
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [self.account.address]
        if method == "eth_chainId":
            return hex(self.current_chain)
        if method == "wallet_switchEthereumChain":
            wanted = int(params[0]["chainId"], 16)
            if wanted not in self.known_chains:
                raise WalletError(4902, f"Unrecognized chain ID {params[0]['chainId']}.")
            self.current_chain = wanted
            return None
        if method == "wallet_addEthereumChain":
            self.known_chains.add(int(params[0]["chainId"], 16))
            return None
        if method == "eth_call":
            call = params[0]
            if self.current_chain != self.chain.w3.eth.chain_id:
                raise WalletError(-32603, "eth_call on a chain this test wallet cannot reach")
            out = self.chain.w3.eth.call({"to": call["to"], "data": call["data"]})
            return "0x" + bytes(out).hex()
        if method == "eth_signTypedData_v4":
            address, text = params
            if address.lower() != self.account.address.lower():
                raise WalletError(4100, "unknown account")
            typed = json.loads(text)
            if int(typed["domain"]["chainId"]) != self.current_chain:
                raise WalletError(-32000, "typed data chainId does not match the active chain")
            signed = Account.sign_typed_data(self.account.key, full_message=_normalised(typed))
            self.signed.append(typed)
            return "0x" + bytes(signed.signature).hex().removeprefix("0x")
        raise WalletError(4200, f"unsupported method {method}")


def _normalised(typed: dict) -> dict:
    """Decimal-string uint values as integers and hex bytes32 as bytes, the way wallets parse them."""
    out = json.loads(json.dumps(typed))
    fields = {f["name"]: f["type"] for f in out["types"][out["primaryType"]]}
    for name, kind in fields.items():
        value = out["message"].get(name)
        if kind.startswith("uint") and isinstance(value, str):
            out["message"][name] = int(value, 0)
        elif kind == "bytes32" and isinstance(value, str):
            out["message"][name] = bytes.fromhex(value.removeprefix("0x"))
    return out


class Connection:
    """One DevTools websocket: commands wait for their reply; events are queued."""

    def __init__(self, ws_url: str):
        self.ws = connect(ws_url, max_size=None, open_timeout=20)
        self.next_id = 0
        self.events: collections.deque = collections.deque()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self.next_id += 1
        message_id = self.next_id
        message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply to {method} within {timeout}s")
            data = json.loads(self.ws.recv(timeout=remaining))
            if data.get("id") == message_id:
                if "error" in data:
                    raise CDPError(f"{method}: {data['error']}")
                return data.get("result", {})
            if "method" in data:
                self.events.append(data)

    def next_event(self, timeout: float):
        if self.events:
            return self.events.popleft()
        try:
            data = json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            return None
        return data if "method" in data else None

    def close(self) -> None:
        self.ws.close()


class Page:
    def __init__(self, conn: Connection, session: str, wallet: BrowserWallet | None):
        self.conn, self.session, self.wallet = conn, session, wallet
        self.console: list[str] = []
        self.responses: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = 30):
        return self.conn.send(method, params, self.session, timeout)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"evaluate {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def pump(self, timeout: float = 0.05) -> None:
        """Handles the events that arrived: wallet calls are answered, console output recorded."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.conn.next_event(max(0.0, deadline - time.monotonic()))
            if event is None:
                return
            if event.get("sessionId") not in (None, self.session):
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.bindingCalled" and params.get("name") == BINDING:
                self._answer(json.loads(params["payload"]))
            elif method == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                self.console.append(f"{entry.get('level')}: {entry.get('text')}")
            elif method == "Network.responseReceived":
                response = params.get("response", {})
                self.responses.append({"url": response.get("url"), "status": response.get("status"),
                                       "headers": {k.lower(): v for k, v in response.get("headers", {}).items()}})

    def _answer(self, call: dict) -> None:
        result, error = None, None
        try:
            if self.wallet is None:
                raise WalletError(4900, "no wallet")
            result = self.wallet.handle(call["method"], call.get("params") or [])
        except WalletError as e:
            error = {"code": e.code, "message": e.message}
        self.send("Runtime.evaluate", {
            "expression": f"window.__x402TestWalletAnswer({int(call['id'])}, {json.dumps(result)}, {json.dumps(error)})"})

    def wait_until(self, condition_js: str, timeout: float = 60):
        """Answers wallet calls until `condition_js` is truthy in the page; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.05)
            try:
                value = self.evaluate(condition_js)
            except CDPError:
                value = None  # the document is being replaced
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {condition_js!r}; console: {self.console[-10:]}")

    def responses_matching(self, predicate, timeout: float = 10) -> list[dict]:
        """The responses recorded so far that match, pumping events until there is one (the
        Network event of a response can arrive after the page has already used it)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.responses if predicate(r)]
            if found or time.monotonic() > deadline:
                return found
            self.pump(0.05)

    def navigate(self, url: str, ready_js: str = "document.readyState === 'complete'", timeout: float = 30):
        self.send("Page.navigate", {"url": url})
        return self.wait_until(ready_js, timeout)

    def click(self, selector: str) -> None:
        """A real mouse click (pressed + released) at the centre of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        assert box, f"no element {selector}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 0 if kind == "mouseMoved" else 1})

    def screenshot(self, path: Path) -> Path:
        self.pump(0.05)
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


class Browser:
    def __init__(self, proc: Process, conn: Connection):
        self.proc, self.conn = proc, conn

    @classmethod
    def start(cls, run_dir: Path, binary: str) -> "Browser":
        profile = run_dir / "chromium-profile"
        argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
                "--force-color-profile=srgb", "--lang=en-US", f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
        proc = Process("chromium", argv, run_dir / "chromium.log", ready=r"DevTools listening on (ws://\S+)")
        url = proc.start(timeout=60).group(1)
        return cls(proc, Connection(url))

    def new_page(self, wallet: BrowserWallet | None, width: int = 820, height: int = 940, isolated: bool = False) -> Page:
        """isolated: the page gets a browser context of its own (its own cookies, like a private window)."""
        context = self.conn.send("Target.createBrowserContext", {})["browserContextId"] if isolated else None
        params = {"url": "about:blank"}
        if context is not None:
            params["browserContextId"] = context
        target = self.conn.send("Target.createTarget", params)["targetId"]
        session = self.conn.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self.conn, session, wallet)
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            page.send(method)
        page.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        if wallet is not None:  # None: a browser without any wallet extension
            page.send("Runtime.addBinding", {"name": BINDING})
            page.send("Page.addScriptToEvaluateOnNewDocument", {"source": PROVIDER_JS})
        page.target_id = target
        page.browser_context = context
        return page

    def close_page(self, page: Page) -> None:
        self.conn.send("Target.closeTarget", {"targetId": page.target_id})
        if getattr(page, "browser_context", None) is not None:
            self.conn.send("Target.disposeBrowserContext", {"browserContextId": page.browser_context})

    def stop(self) -> None:
        try:
            self.conn.close()
        finally:
            self.proc.stop()
