// The paywall's style sheet and script, inlined into every page (no CDN, no external fonts).
// Kept readable rather than minified: the whole page stays far below its 40 KB budget.

enum PaywallAssets {
    static let style = #"""
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;justify-content:center;
  padding:24px 16px;background:var(--bg);color:var(--fg);
  font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{width:100%;max-width:460px;background:var(--card);border:1px solid var(--line);border-radius:16px;
  padding:28px;box-shadow:0 8px 30px rgba(0,0,0,.08)}
.brand{display:flex;align-items:center;gap:10px;margin:0 0 18px;font-weight:600;color:var(--muted)}
.brand img{width:32px;height:32px;border-radius:8px;object-fit:contain}
h1{font-size:1.35rem;margin:0 0 4px}
.desc{margin:0 0 18px;color:var(--muted);overflow-wrap:anywhere}
.price{font-size:2.2rem;font-weight:700;letter-spacing:-.02em;margin:0 0 18px;overflow-wrap:anywhere}
.price #symbol{font-size:1.1rem;font-weight:600;color:var(--muted)}
dl{display:grid;grid-template-columns:auto 1fr;gap:6px 14px;margin:0 0 18px;font-size:.92rem}
dt{color:var(--muted)}
dd{margin:0;min-width:0;overflow-wrap:anywhere}
code{font:.85rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
label{display:block;font-size:.92rem;color:var(--muted);margin:0 0 4px}
select{width:100%;margin:0 0 16px;padding:8px;border-radius:10px;border:1px solid var(--line);background:var(--card);color:var(--fg);font:inherit}
.note{font-size:.9rem;padding:10px 12px;border-radius:10px;background:var(--soft);margin:0 0 16px}
a{color:var(--accent)}
#wallets{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:0 0 12px;font-size:.9rem;color:var(--muted)}
.wallet{border:1px solid var(--line);background:var(--card);color:var(--fg);border-radius:999px;padding:4px 12px;font:inherit;cursor:pointer}
.wallet.on{border-color:var(--accent);box-shadow:0 0 0 1px var(--accent)}
#pay{width:100%;padding:13px 16px;border:0;border-radius:12px;background:var(--accent);color:#fff;font:inherit;font-weight:600;line-height:1.2;cursor:pointer}
#pay:disabled{opacity:.55;cursor:progress}
#pay:focus-visible,.wallet:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.msg{min-height:1.5em;margin:14px 0 0;font-size:.95rem;overflow-wrap:anywhere}
.msg.err{color:var(--err)}
.msg.ok{color:var(--okc)}
.msg.warn{color:var(--muted)}
pre{margin:14px 0 0;padding:12px;max-height:50vh;overflow:auto;border-radius:10px;background:var(--soft);font:.85rem/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
footer{margin-top:16px;font-size:.8rem;color:var(--muted)}
[hidden]{display:none!important}
"""#

    /// Reads the 402 from `#x402-payment-required` and the page settings from `#x402-paywall`, finds an
    /// EIP-1193 wallet (EIP-6963 or `window.ethereum`), signs an EIP-3009 `TransferWithAuthorization`
    /// with `eth_signTypedData_v4`, retries the URL with `PAYMENT-SIGNATURE` and shows the answer.
    /// When the paid answer brings a route pass (`PAYMENT-PASS`; its cookie is set), a GET page
    /// checks that the pass opens the URL (a `HEAD` with the cookie) and reloads it, so the content
    /// loads as itself; otherwise the answer is shown here as without a pass.
    /// Only `textContent` is ever assigned from data; the one `document.write` is the paid HTML.
    static let script = #"""
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var req = JSON.parse($('x402-payment-required').textContent);
  var cfg = JSON.parse($('x402-paywall').textContent);
  var method = document.body.getAttribute('data-method') || 'GET';
  var btn = $('pay'), statusEl = $('status'), picker = $('offer');
  var busy = false, paid = false, idx = 0, wallets = [], chosen = null;

  function say(text, kind) {
    statusEl.textContent = text;
    statusEl.className = 'msg' + (kind ? ' ' + kind : '');
  }
  function Stop(text) { this.message = text; }
  function stop(text) { return new Stop(text); }
  function code(e) {
    if (!e) return undefined;
    if (typeof e.code === 'number') return e.code;
    if (e.error && typeof e.error.code === 'number') return e.error.code;
    if (e.data && e.data.originalError && typeof e.data.originalError.code === 'number') return e.data.originalError.code;
    return undefined;
  }
  function units(v, decimals) {
    if (decimals === null || decimals === undefined) return v.toString();
    var s = v.toString().padStart(decimals + 1, '0');
    var whole = s.slice(0, s.length - decimals), frac = decimals ? s.slice(s.length - decimals).replace(/0+$/, '') : '';
    return frac ? whole + '.' + frac : whole;
  }
  function short(a) { return a.slice(0, 6) + '\u2026' + a.slice(-4); }
  function reason(r) { return (cfg.reasons && cfg.reasons[r]) || r; }
  function decodeHeader(v) {
    if (!v) return null;
    try {
      var bin = atob(v), bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) { return null; }
  }
  function encodeHeader(value) {
    var bytes = new TextEncoder().encode(JSON.stringify(value)), bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin);
  }
  function parseJSON(t) { try { return JSON.parse(t); } catch (e) { return undefined; } }
  function randomNonce() {
    var b = new Uint8Array(32);
    crypto.getRandomValues(b);
    return '0x' + Array.from(b, function (x) { return x.toString(16).padStart(2, '0'); }).join('');
  }

  function select(i) {
    idx = i;
    var o = cfg.offers[i];
    $('amount').textContent = o.price;
    $('symbol').textContent = o.symbol;
    $('network').textContent = o.network;
    $('payto').textContent = req.accepts[i].payTo;
    var hint = $('testnet');
    if (hint) {
      hint.hidden = !o.testnet;
      var link = $('faucet');
      if (link) { link.hidden = !o.faucet; if (o.faucet) link.href = o.faucet; }
    }
  }
  if (picker) picker.addEventListener('change', function () { select(picker.selectedIndex); });

  // Wallets: EIP-6963 announcements, else the legacy window.ethereum.
  function showWallets() {
    var box = $('wallets');
    if (wallets.length < 2) { box.hidden = true; return; }
    box.hidden = false;
    box.textContent = '';
    var label = document.createElement('span');
    label.textContent = 'Wallet:';
    box.appendChild(label);
    wallets.forEach(function (w) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'wallet' + (w.provider === chosen ? ' on' : '');
      b.setAttribute('aria-pressed', w.provider === chosen ? 'true' : 'false');
      b.textContent = String(w.info.name || 'Wallet').slice(0, 40);
      b.addEventListener('click', function () { if (!busy) { chosen = w.provider; showWallets(); } });
      box.appendChild(b);
    });
  }
  window.addEventListener('eip6963:announceProvider', function (event) {
    var d = event.detail;
    if (!d || !d.info || !d.provider || typeof d.provider.request !== 'function') return;
    for (var i = 0; i < wallets.length; i++) if (wallets[i].info.uuid === d.info.uuid) return;
    wallets.push(d);
    if (!chosen) chosen = d.provider;
    showWallets();
  });
  window.dispatchEvent(new Event('eip6963:requestProvider'));
  function wallet() {
    if (chosen) return chosen;
    var eth = window.ethereum;
    return eth && typeof eth.request === 'function' ? eth : null;
  }

  async function ensureChain(p, o) {
    var want = o.chainId;
    var current = async function () {
      var c = await p.request({ method: 'eth_chainId' });
      try { return '0x' + BigInt(c).toString(16); } catch (e) { return String(c); }
    };
    if (await current() === want) return;
    var wrong = 'Your wallet is on another network. Switch it to ' + o.network + ' to pay.';
    say('Switching your wallet to ' + o.network + '\u2026');
    try {
      await p.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: want }] });
    } catch (e) {
      if (code(e) === 4001) throw stop(wrong);
      if (code(e) !== 4902) throw stop(wrong + ' (' + (e && e.message ? e.message : 'switch failed') + ')');
      if (!o.addChain) {
        throw stop('Your wallet does not know ' + o.network + ' (chain id ' + BigInt(want).toString() +
          '). Add that network to your wallet, then try again.');
      }
      var params = Object.assign({ chainId: want }, o.addChain);
      try {
        await p.request({ method: 'wallet_addEthereumChain', params: [params] });
        await p.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: want }] });
      } catch (e2) {
        if (code(e2) === 4001) throw stop(wrong);
        throw stop(wrong + ' (' + (e2 && e2.message ? e2.message : 'adding the network failed') + ')');
      }
    }
    if (await current() !== want) throw stop(wrong);
  }

  async function checkBalance(p, offer, o, from) {
    var data = '0x70a08231' + from.slice(2).toLowerCase().padStart(64, '0');
    var out;
    try {
      out = await p.request({ method: 'eth_call', params: [{ to: offer.asset, data: data }, 'latest'] });
    } catch (e) {
      if (code(e) === 4001) throw e;
      return; // the wallet cannot read balances: the facilitator will check
    }
    if (typeof out !== 'string' || !/^0x[0-9a-fA-F]*$/.test(out)) return;
    var have = out === '0x' ? BigInt(0) : BigInt(out), need = BigInt(offer.amount);
    if (have >= need) return;
    throw stop('Insufficient balance: this costs ' + o.price + ' ' + o.symbol + ', and ' + short(from) +
      ' holds ' + units(have, o.decimals) + ' ' + o.symbol + ' on ' + o.network + '.' +
      (o.faucet ? ' Test tokens are free from the faucet linked below.' : ''));
  }

  function typedData(offer, o, auth) {
    return {
      types: {
        EIP712Domain: [
          { name: 'name', type: 'string' }, { name: 'version', type: 'string' },
          { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' }
        ],
        TransferWithAuthorization: [
          { name: 'from', type: 'address' }, { name: 'to', type: 'address' },
          { name: 'value', type: 'uint256' }, { name: 'validAfter', type: 'uint256' },
          { name: 'validBefore', type: 'uint256' }, { name: 'nonce', type: 'bytes32' }
        ]
      },
      primaryType: 'TransferWithAuthorization',
      domain: {
        name: offer.extra.name, version: offer.extra.version,
        chainId: Number(BigInt(o.chainId)), verifyingContract: offer.asset
      },
      message: auth
    };
  }

  function refusal(res, body) {
    var why = '';
    var required = decodeHeader(res.headers.get('PAYMENT-REQUIRED'));
    if (required && required.error) why = required.error;
    var settled = decodeHeader(res.headers.get('PAYMENT-RESPONSE'));
    if (!why && settled && settled.errorReason) why = settled.errorReason;
    var json = parseJSON(body);
    if (!why && json && typeof json.error === 'string') why = json.error;
    return 'Payment refused: ' + (why ? reason(why) : 'no reason given') + '. You were not charged.';
  }

  function fileName(res) {
    var cd = res.headers.get('Content-Disposition') || '';
    var m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
    var name = m ? m[1] : location.pathname.split('/').pop();
    try { name = decodeURIComponent(name); } catch (e) { /* keep as is */ }
    name = (name || '').replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_').slice(0, 120);
    return name || 'download';
  }

  async function show(res) {
    if (res.status === 402) throw stop(refusal(res, await res.text().catch(function () { return ''; })));
    if (!res.ok) {
      var text = await res.text().catch(function () { return ''; }), j = parseJSON(text);
      throw stop('The server answered ' + res.status + (res.statusText ? ' ' + res.statusText : '') +
        (j && typeof j.message === 'string' ? ': ' + j.message : '') + '.');
    }
    var receipt = decodeHeader(res.headers.get('PAYMENT-RESPONSE'));
    if (res.headers.get('PAYMENT-PASS') && method === 'GET') {
      paid = true;
      btn.hidden = true;
      say('Paid' + (receipt && receipt.transaction ? ' \u2014 transaction ' + receipt.transaction : '') + '. Opening the page\u2026', 'ok');
      var opened = false;
      try {
        var probe = await fetch(location.href, { method: 'HEAD', credentials: 'same-origin', cache: 'no-store',
          headers: { 'Accept': 'text/html,application/json;q=0.9,*/*;q=0.8' } });
        opened = probe.ok;
      } catch (e) { /* shown here instead */ }
      if (opened) {
        location.reload();
        return;
      }
    }
    var type = (res.headers.get('Content-Type') || '').toLowerCase();
    if (type.indexOf('text/html') !== -1) {
      var html = await res.text();
      paid = true;
      document.open();
      document.write(html);
      document.close();
      return;
    }
    paid = true;
    btn.hidden = true;
    $('heading').textContent = 'Payment complete';
    if ($('testnet')) $('testnet').hidden = true;
    var done = 'Paid' + (receipt && receipt.transaction ? ' \u2014 transaction ' + receipt.transaction : '') + '.';
    var out = $('result');
    var mime = type.split(';')[0].trim();
    if (mime === 'application/json' || /\+json$/.test(mime)) {
      var body = await res.text(), value = parseJSON(body);
      out.textContent = value === undefined ? body : JSON.stringify(value, null, 2);
      out.hidden = false;
      say(done, 'ok');
      return;
    }
    var blob = await res.blob(), name = fileName(res), link = $('download');
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.textContent = 'Save ' + name + ' again';
    link.hidden = false;
    link.click();
    say(done + ' Your download (' + name + ') has started.', 'ok');
  }

  function describe(e) {
    if (e instanceof Stop) return e.message;
    var c = code(e);
    if (c === 4001) return 'You rejected the request in your wallet. Nothing was paid.';
    if (c === 4100) return 'Your wallet has not authorised this page. Unlock or connect it, then try again.';
    if (c === -32002) return 'Your wallet already has a request waiting: open it to continue.';
    return 'Wallet error: ' + (e && e.message ? e.message : String(e));
  }

  async function pay() {
    if (busy || paid) return;
    var p = wallet();
    if (!p) {
      say('No wallet found. Install a browser wallet extension (for example MetaMask, Coinbase Wallet or Rabby) ' +
        'and reload this page, or pay with an x402 client.', 'err');
      return;
    }
    busy = true;
    btn.disabled = true;
    if (picker) picker.disabled = true;
    try {
      var offer = req.accepts[idx], o = cfg.offers[idx];
      var method3009 = offer.extra && offer.extra.assetTransferMethod;
      if (offer.scheme !== 'exact' || (method3009 && method3009 !== 'eip3009') || !offer.extra || !offer.extra.name) {
        throw stop('This page cannot pay with this offer; use an x402 client.');
      }
      say('Connecting to your wallet\u2026');
      var accounts = await p.request({ method: 'eth_requestAccounts' });
      var from = accounts && accounts[0];
      if (typeof from !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(from)) throw stop('Your wallet did not share an account.');
      await ensureChain(p, o);
      say('Checking your balance\u2026');
      await checkBalance(p, offer, o, from);
      var now = Math.floor(Date.now() / 1000);
      var auth = {
        from: from, to: offer.payTo, value: offer.amount,
        validAfter: String(now - 600), validBefore: String(now + offer.maxTimeoutSeconds), nonce: randomNonce()
      };
      say('Confirm the payment of ' + o.price + ' ' + o.symbol + ' in your wallet\u2026');
      var signature = await p.request({ method: 'eth_signTypedData_v4', params: [from, JSON.stringify(typedData(offer, o, auth))] });
      if (typeof signature !== 'string' || !/^0x[0-9a-fA-F]+$/.test(signature)) throw stop('Your wallet returned no signature.');
      var header = encodeHeader({
        x402Version: 2, resource: req.resource, accepted: offer,
        payload: { signature: signature, authorization: auth }
      });
      say('Paying\u2026');
      var res;
      try {
        res = await fetch(location.href, {
          method: method, credentials: 'same-origin', cache: 'no-store',
          headers: { 'PAYMENT-SIGNATURE': header, 'Accept': 'text/html,application/json;q=0.9,*/*;q=0.8' }
        });
      } catch (e) {
        throw stop('Network error: no answer from the server. Check your wallet\u2019s activity before paying again.');
      }
      await show(res);
    } catch (e) {
      say(describe(e), 'err');
    } finally {
      busy = false;
      if (!paid) {
        btn.disabled = false;
        if (picker) picker.disabled = false;
      }
    }
  }

  select(0);
  btn.addEventListener('click', pay);
  btn.disabled = false;
  if (req.error && req.error !== 'Payment required') {
    say('Your last payment was refused: ' + reason(req.error) + '.', 'err');
  } else {
    setTimeout(function () {
      if (!wallet() && !busy && !paid) say('No browser wallet detected yet. You need one to pay here.', 'warn');
    }, 600);
  }
})();
"""#
}
