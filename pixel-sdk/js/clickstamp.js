// clickstamp pixel loader. ES5, no dependencies, never throws into the host page.
//
// Snippet API (calls made before this file arrives are queued by the snippet):
//   clickstamp('config', {endpoint: 'https://trk.example'})
//   clickstamp('conversion', {event: 'purchase', txid: 'T1', value: 12.5, currency: 'USD'})
//   clickstamp('clickId')   -> the visitor's click ID (32 hex) or undefined
//
// Where WebAssembly exists, the first conversion loads the Rust core (wasm-bindgen
// no-modules glue + .wasm, both next to this file) and lets it find the click ID,
// validate the conversion and compute the event ID with the server's own code.
// Without WebAssembly, or if the core fails or takes over 1.5 s, a pure-JS path
// applies the same rules and sends without event_id (the server computes it).
//
// Style rules that js/minify.sh relies on: comments only on lines of their own,
// every statement ends with a semicolon.
(function (w, d) {
  'use strict';
  var NAME = 'clickstamp';
  var STORE_KEY = 'clickstamp_cid';
  var PARAMS = ['cs_cid', 'cid', 'clickid', 'click_id'];
  var COOKIE_PREFIX = 'cs_';
  var GLUE = 'clickstamp_pixel.js';
  var WASM = 'clickstamp_pixel_bg.wasm';
  var CORE_TIMEOUT_MS = 1500;
  var MAX_PAGE = 512;
  // A UUIDv7 (version nibble 7, RFC variant) once hyphens are gone and case folded.
  var UUID7 = /^[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$/;
  var HYPHENATED = /^.{8}-.{4}-.{4}-.{4}-.{12}$/;
  var EVENT = /^[A-Za-z0-9_.\-]{1,64}$/;

  var prev = w[NAME];
  // Included twice: the first copy keeps serving.
  if (prev && prev.loaded) {
    return;
  }

  var script = d.currentScript || lastScript();
  var src = (script && script.src) || '';
  // The glue and the .wasm live next to this file, whatever path it is served from.
  var base = src.replace(/[?#].*$/, '').replace(/[^\/]*$/, '');
  var endpoint = (src.match(/^https?:\/\/[^\/?#]+/) || [''])[0];
  var core = null;
  // 0: not requested, 1: loading, 2: ready, 3: unavailable (pure-JS path).
  var coreState = 0;
  var waiting = [];
  var sent = {};
  var images = [];

  function lastScript() {
    var s = d.getElementsByTagName('script');
    for (var i = s.length - 1; i >= 0; i--) {
      if (/clickstamp(\.min)?\.js/.test(s[i].src)) {
        return s[i];
      }
    }
    return null;
  }

  function trim(v) {
    return v == null ? '' : String(v).replace(/^\s+|\s+$/g, '');
  }

  function stored() {
    try {
      return w.localStorage.getItem(STORE_KEY);
    } catch (e) {
      return null;
    }
  }

  function store(cid) {
    try {
      w.localStorage.setItem(STORE_KEY, cid);
    } catch (e) {
    }
  }

  function cookies() {
    try {
      return d.cookie || '';
    } catch (e) {
      return '';
    }
  }

  function decode(s) {
    try {
      return decodeURIComponent(s.replace(/\+/g, ' '));
    } catch (e) {
      return s;
    }
  }

  // The click ID in 32 lowercase hex if v has its shape (same rules as the core).
  function shape(v) {
    v = trim(v);
    if (v.length !== 32 && !HYPHENATED.test(v)) {
      return null;
    }
    v = v.replace(/-/g, '').toLowerCase();
    return UUID7.test(v) ? v : null;
  }

  // URL parameters in PARAMS order, then cs_* cookies, then localStorage.
  function findJs() {
    var parts = w.location.search.replace(/^\?/, '').split('&');
    var i, j, k, v, eq;
    for (i = 0; i < PARAMS.length; i++) {
      for (j = 0; j < parts.length; j++) {
        eq = parts[j].indexOf('=');
        k = decode(eq < 0 ? parts[j] : parts[j].slice(0, eq));
        if (k === PARAMS[i]) {
          v = shape(decode(eq < 0 ? '' : parts[j].slice(eq + 1)));
          if (v) {
            return v;
          }
          break;
        }
      }
    }
    parts = cookies().split(';');
    for (j = 0; j < parts.length; j++) {
      eq = parts[j].indexOf('=');
      if (eq > 0 && trim(parts[j].slice(0, eq)).indexOf(COOKIE_PREFIX) === 0) {
        v = shape(trim(parts[j].slice(eq + 1)).replace(/^"(.*)"$/, '$1'));
        if (v) {
          return v;
        }
      }
    }
    return shape(stored());
  }

  function findClickId() {
    var cid = core ? core.find_click_id(w.location.search, cookies(), stored()) : findJs();
    if (cid) {
      store(cid);
    }
    return cid || undefined;
  }

  function page() {
    return String(w.location.href).slice(0, MAX_PAGE);
  }

  // The beacon body from the core: validated, with the server's event ID.
  function bodyCore(c) {
    var cid = findClickId();
    return cid ? core.build_payload(cid, c.event, c.txid, c.value, c.currency, page()) : null;
  }

  // The same rules in JS; event_id is left to the server.
  function bodyJs(c) {
    var cid = findClickId();
    var event = c.event || 'conversion';
    var txid = c.txid || null;
    var currency = c.currency || null;
    var value = c.value;
    if (!cid || !EVENT.test(event)) {
      return null;
    }
    // Count code points, as the core does, not UTF-16 units.
    if (txid && txid.replace(/[\ud800-\udbff][\udc00-\udfff]/g, '_').length > 128) {
      return null;
    }
    if (value !== null && !(value >= 0 && value < Infinity)) {
      return null;
    }
    if (currency) {
      if (!/^[A-Za-z]{3}$/.test(currency)) {
        return null;
      }
      currency = currency.toUpperCase();
    }
    return JSON.stringify({
      cid: cid, event: event, txid: txid, value: value,
      currency: currency, event_id: null, page: page() || null
    });
  }

  // Beacon, else fetch keepalive, else an image; each conversion once per page.
  function send(url, json) {
    var f = JSON.parse(json);
    var key = f.cid + '|' + f.event.toLowerCase() + '|' + (f.txid || '');
    var n = w.navigator;
    var q = [];
    var k, img;
    if (sent[key]) {
      return;
    }
    sent[key] = 1;
    try {
      // text/plain is a CORS-safelisted type: no preflight.
      if (n.sendBeacon && n.sendBeacon(url, new Blob([json], {type: 'text/plain'}))) {
        return;
      }
    } catch (e) {
    }
    try {
      if (w.fetch) {
        w.fetch(url, {
          method: 'POST', body: json, keepalive: true, mode: 'cors',
          credentials: 'omit', headers: {'Content-Type': 'text/plain'}
        }).then(null, function () {});
        return;
      }
    } catch (e) {
    }
    for (k in f) {
      if (f[k] != null && k !== 'page') {
        q.push(k + '=' + encodeURIComponent(f[k]));
      }
    }
    img = new Image();
    // Keep a reference until the request settles, or it may be collected unsent.
    images.push(img);
    img.onload = img.onerror = function () {
      images.splice(images.indexOf(img), 1);
    };
    img.src = url + '?' + q.join('&');
  }

  // Calls back exactly once, with the core or with null for the pure-JS path.
  function settle(k) {
    var cbs = waiting;
    // The first outcome wins: a core that arrives after the timeout stays unused.
    if (coreState > 1) {
      return;
    }
    core = k;
    coreState = k ? 2 : 3;
    waiting = [];
    for (var i = 0; i < cbs.length; i++) {
      cbs[i]();
    }
  }

  function loadCore() {
    var s;
    coreState = 1;
    setTimeout(function () {
      settle(null);
    }, CORE_TIMEOUT_MS);
    if (typeof WebAssembly !== 'object' || !base) {
      return settle(null);
    }
    s = d.createElement('script');
    s.async = true;
    s.src = base + GLUE;
    s.onerror = function () {
      settle(null);
    };
    s.onload = function () {
      try {
        // The no-modules glue declares this global with `let`: not a window property.
        var g = __clickstamp_wasm;
        g({module_or_path: base + WASM}).then(function () {
          settle(g);
        }, function () {
          settle(null);
        });
      } catch (e) {
        settle(null);
      }
    };
    (d.head || d.documentElement).appendChild(s);
  }

  function whenCore(cb) {
    if (coreState > 1) {
      return cb();
    }
    waiting.push(cb);
    if (coreState === 0) {
      try {
        loadCore();
      } catch (e) {
        settle(null);
      }
    }
  }

  function conversion(o) {
    var url = endpoint + '/px';
    var c;
    o = o || {};
    c = {
      event: trim(o.event), txid: trim(o.txid), currency: trim(o.currency),
      value: o.value == null || o.value === '' ? null : +o.value
    };
    whenCore(function () {
      try {
        var json = core ? bodyCore(c) : bodyJs(c);
        if (json) {
          send(url, json);
        }
      } catch (e) {
      }
    });
  }

  function api(cmd, arg) {
    try {
      if (cmd === 'config') {
        if (arg && typeof arg.endpoint === 'string') {
          endpoint = arg.endpoint.replace(/\/+$/, '');
        }
      } else if (cmd === 'conversion') {
        conversion(arg);
      } else if (cmd === 'clickId') {
        return findClickId();
      }
    } catch (e) {
    }
  }

  api.loaded = true;
  // A page that kept a reference to the snippet's stub still reaches us through q.
  api.q = {push: function (args) {
    api.apply(null, args);
  }};
  w[NAME] = api;
  try {
    findClickId();
  } catch (e) {
  }
  var queued = (prev && prev.q) || [];
  for (var i = 0; i < queued.length; i++) {
    api.apply(null, queued[i]);
  }
})(window, document);
