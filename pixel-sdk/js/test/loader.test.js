// Smoke tests of the loader in a simulated page (node:vm), run against dist/: the
// readable and the minified copy, with and without WebAssembly. No npm packages.
//
//   node --test pixel-sdk/js/test/loader.test.js
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const DIST = process.env.PIXEL_DIST || path.join(__dirname, '..', '..', 'dist');
const CID = '0190a1b2c3d47e5f8a9b0c1d2e3f4a5b';
const CID_HYPH = '0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B';
// clickstamp_plugins::dedup_key(CID, "purchase", Some("T1")), pinned in plugins/fixtures.
const KEY_PURCHASE_T1 = 'ee0920fdc4cdb41bc895208725129ca5';
const SNIPPET =
  'window.clickstamp = window.clickstamp || function(){(clickstamp.q = clickstamp.q || []).push(arguments)};';

// A page at `href` that loaded the loader from `src`. Options switch off browser
// features to force each fallback.
function page(opts) {
  const o = Object.assign(
    {
      href: 'https://shop.example/thanks?cs_cid=' + CID,
      src: 'https://trk.example/sdk/clickstamp.min.js',
      cookie: '',
      wasm: false,
      beacon: true,
      fetch: true,
      glueMissing: false,
    },
    opts,
  );
  const url = new URL(o.href);
  const sent = [];
  const errors = [];
  const storage = {};
  const head = {
    appendChild(el) {
      // The loader only ever appends its glue <script>: "fetch" it from dist/.
      setTimeout(() => {
        const file = path.join(DIST, el.src.replace(/^.*\//, ''));
        if (o.glueMissing || !el.src.startsWith('https://trk.example/sdk/')) return el.onerror();
        vm.runInContext(fs.readFileSync(file, 'utf8'), ctx, { filename: file });
        el.onload();
      }, 5);
    },
  };
  const win = {
    location: { href: o.href, search: url.search },
    navigator: {},
    localStorage: {
      getItem: (k) => (k in storage ? storage[k] : null),
      setItem: (k, v) => {
        storage[k] = String(v);
      },
    },
    setTimeout,
    clearTimeout,
    console,
    TextDecoder,
    TextEncoder,
    Response,
    URL,
    Blob: function (parts, opts) {
      this.text = parts.join('');
      this.type = opts.type;
    },
    Image: function () {
      const img = this;
      Object.defineProperty(img, 'src', {
        set(v) {
          sent.push({ via: 'image', url: v });
        },
      });
    },
    document: {
      currentScript: { src: o.src },
      cookie: o.cookie,
      head,
      createElement: () => ({}),
      getElementsByTagName: () => [],
    },
  };
  if (o.beacon) {
    win.navigator.sendBeacon = (u, blob) => {
      sent.push({ via: 'beacon', url: u, type: blob.type, body: JSON.parse(blob.text) });
      return true;
    };
  }
  if (o.fetch) {
    win.fetch = (u, init) => {
      if (u.endsWith('.wasm')) {
        const bytes = fs.readFileSync(path.join(DIST, u.replace(/^.*\//, '')));
        return Promise.resolve(new Response(bytes, { headers: { 'Content-Type': 'application/wasm' } }));
      }
      sent.push({ via: 'fetch', url: u, init, body: JSON.parse(init.body) });
      // The endpoint is down: the loader must swallow the rejection.
      return Promise.reject(new TypeError('Failed to fetch'));
    };
  }
  const ctx = vm.createContext(win);
  win.window = ctx;
  if (!o.wasm) vm.runInContext('delete globalThis.WebAssembly', ctx);
  return {
    ctx,
    sent,
    errors,
    storage,
    run(code) {
      return vm.runInContext(code, ctx);
    },
    load(file) {
      const f = path.join(DIST, file);
      vm.runInContext(fs.readFileSync(f, 'utf8'), ctx, { filename: f });
    },
  };
}

const settle = (ms) => new Promise((r) => setTimeout(r, ms || 50));

for (const file of ['clickstamp.js', 'clickstamp.min.js']) {
  test(`${file}: queued calls replay on the pure-JS path`, async () => {
    const p = page();
    p.run(SNIPPET);
    p.run("clickstamp('config', {endpoint: 'https://px.example/'});");
    p.run("clickstamp('conversion', {event: 'purchase', txid: 'T1', value: '12.50', currency: 'usd'});");
    p.load(file);
    await settle();
    assert.equal(p.sent.length, 1);
    const s = p.sent[0];
    assert.equal(s.via, 'beacon');
    assert.equal(s.url, 'https://px.example/px');
    assert.equal(s.type, 'text/plain');
    assert.deepEqual(s.body, {
      cid: CID,
      event: 'purchase',
      txid: 'T1',
      value: 12.5,
      currency: 'USD',
      event_id: null,
      page: 'https://shop.example/thanks?cs_cid=' + CID,
    });
    assert.equal(p.storage.clickstamp_cid, CID);
    assert.equal(p.run("clickstamp('clickId')"), CID);
  });

  test(`${file}: each conversion is sent once per page, invalid ones never`, async () => {
    const p = page({ href: 'https://shop.example/thanks', cookie: 'a=1; cs_summer=' + CID_HYPH });
    p.load(file);
    p.run("clickstamp('conversion', {event: 'purchase', txid: 'T1'});");
    p.run("clickstamp('conversion', {event: 'Purchase', txid: 'T1'});");
    p.run("clickstamp('conversion', {event: 'add to cart'});");
    p.run("clickstamp('conversion', {value: -1});");
    p.run("clickstamp('conversion', {currency: 'EURO'});");
    p.run("clickstamp('conversion');");
    p.run("clickstamp('nonsense', 1, 2);");
    await settle();
    assert.deepEqual(
      p.sent.map((s) => [s.body.cid, s.body.event, s.body.txid]),
      [
        [CID, 'purchase', 'T1'],
        [CID, 'conversion', null],
      ],
    );
    // The endpoint defaults to the origin the loader came from.
    assert.equal(p.sent[0].url, 'https://trk.example/px');
  });

  test(`${file}: no click ID anywhere means nothing is sent`, async () => {
    const p = page({ href: 'https://shop.example/thanks?cid=12345', cookie: 'cs_x=junk' });
    p.load(file);
    p.run("clickstamp('conversion', {event: 'purchase'});");
    await settle();
    assert.deepEqual(p.sent, []);
    assert.equal(p.run("clickstamp('clickId')"), undefined);
  });

  test(`${file}: fetch keepalive, then image, when sendBeacon is missing`, async () => {
    const p = page({ beacon: false });
    p.load(file);
    p.run("clickstamp('conversion', {event: 'lead', txid: 'A&B'});");
    await settle();
    assert.equal(p.sent.length, 1);
    assert.equal(p.sent[0].via, 'fetch');
    // Through JSON: the init object comes from the page's realm.
    const init = JSON.parse(JSON.stringify(p.sent[0].init));
    assert.equal(typeof init.body, 'string');
    delete init.body;
    assert.deepEqual(
      init,
      {
        method: 'POST',
        keepalive: true,
        mode: 'cors',
        credentials: 'omit',
        headers: { 'Content-Type': 'text/plain' },
      },
    );

    const q = page({ beacon: false, fetch: false });
    q.load(file);
    q.run("clickstamp('conversion', {event: 'lead', txid: 'A&B', value: 3, currency: 'eur'});");
    await settle();
    assert.deepEqual(q.sent, [
      {
        via: 'image',
        url: `https://trk.example/px?cid=${CID}&event=lead&txid=A%26B&value=3&currency=EUR`,
      },
    ]);
  });

  test(`${file}: the WASM core computes the server's event ID`, async () => {
    const p = page({ wasm: true });
    p.load(file);
    p.run("clickstamp('conversion', {event: 'purchase', txid: 'T1', value: 12.5});");
    await settle(500);
    assert.equal(p.sent.length, 1);
    assert.equal(p.sent[0].body.event_id, KEY_PURCHASE_T1);
    assert.equal(p.sent[0].body.value, 12.5);
    // Now the core answers clickId too.
    assert.equal(p.run("clickstamp('clickId')"), CID);
    p.run("clickstamp('conversion', {event: 'PURCHASE', txid: 'T1'});");
    p.run("clickstamp('conversion', {event: 'bad event'});");
    await settle();
    assert.equal(p.sent.length, 1);
  });

  test(`${file}: a missing core falls back to the pure-JS path`, async () => {
    const p = page({ wasm: true, glueMissing: true });
    p.load(file);
    p.run("clickstamp('conversion', {event: 'purchase'});");
    await settle();
    assert.equal(p.sent.length, 1);
    assert.equal(p.sent[0].body.event_id, null);
  });

  test(`${file}: broken browser APIs never throw into the page`, async () => {
    const p = page({ wasm: true });
    p.run(
      "Object.defineProperty(window, 'localStorage', {get: function () { throw new Error('denied'); }});" +
        "Object.defineProperty(document, 'cookie', {get: function () { throw new Error('sandboxed'); }});" +
        "navigator.sendBeacon = function () { throw new Error('boom'); };",
    );
    p.load(file);
    p.run("clickstamp('conversion', {event: 'purchase'});");
    p.run("clickstamp('config', null); clickstamp('config', {endpoint: 7}); clickstamp();");
    // Not an object: a conversion with every default.
    p.run("clickstamp('conversion', 42);");
    await settle(500);
    assert.deepEqual(
      p.sent.map((s) => [s.via, s.url, s.body.event]),
      [
        ['fetch', 'https://trk.example/px', 'purchase'],
        ['fetch', 'https://trk.example/px', 'conversion'],
      ],
    );
  });
}
