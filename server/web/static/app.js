// sessionaudit web UI: hash routes over the collector's HTTP API.
//
// Rules kept throughout: data is inserted only as text (textContent,
// createElementNS), never as markup; the token lives in sessionStorage and
// travels only in the Authorization header; every view is a URL
// (#/view?param=...) that can be shared.
'use strict';

(function () {
  const TOKEN_KEY = 'sessionaudit.token';
  const TZ_KEY = 'sessionaudit.tz';
  const SVG = 'http://www.w3.org/2000/svg';
  const PAGE_SIZE = 500;

  // Logon types in WMI order; their colours are classes in app.css.
  const LOGON_TYPES = ['system', 'interactive', 'network', 'batch', 'service', 'proxy', 'unlock',
    'network-cleartext', 'new-credentials', 'rdp', 'cached-interactive', 'cached-rdp', 'cached-unlock'];

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers: text only ----

  // el makes an HTML element with attributes and children (strings become
  // text nodes).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  // svg makes an SVG element with attributes.
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'text') e.textContent = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) if (c) e.append(c);
    return e;
  }

  // ---- state ----

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    local: localStorage.getItem(TZ_KEY) === 'local',
    render: null, // re-renders the current view from its loaded rows (time zone toggle)
    seq: 0, // route generation: answers for an older route are dropped
  };

  // ---- errors ----

  function showError(msg) {
    const p = $('error');
    p.textContent = msg;
    p.hidden = !msg;
  }

  // ApiError carries the API's error body.
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---- API ----

  function apiURL(path, params) {
    const u = new URL(path, location.href);
    for (const [k, v] of Object.entries(params || {})) {
      if (Array.isArray(v)) v.forEach((x) => x !== '' && u.searchParams.append(k, x));
      else if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
    }
    return u.pathname + u.search;
  }

  async function apiFetch(path, params, token) {
    let resp;
    const req = () => fetch(apiURL(path, params), {
      headers: { Authorization: 'Bearer ' + (token || state.token) },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    try {
      resp = await req();
    } catch (_) {
      // A connection the collector (or a proxy) closed while idle fails
      // the request without an answer; every call is a GET, so try once
      // more.
      try {
        resp = await req();
      } catch (e) {
        throw new ApiError(0, 'unavailable', 'The collector did not answer (' + e.message + ').');
      }
    }
    if (!resp.ok) {
      let code = '', message = '';
      try {
        const body = await resp.json();
        code = body.code || '';
        message = body.error || '';
      } catch (_) { /* not JSON */ }
      throw new ApiError(resp.status, code || String(resp.status),
        message || ('HTTP ' + resp.status + ' ' + resp.statusText + ' from ' + path));
    }
    return resp;
  }

  async function api(path, params, token) {
    return (await apiFetch(path, params, token)).json();
  }

  // failed shows an API error; an unauthenticated answer signs out.
  function failed(e) {
    if (e instanceof ApiError && e.status === 401) {
      signOut('Signed out: ' + e.message);
      return;
    }
    const what = e instanceof ApiError ? (e.code + ': ' + e.message) : String(e && e.message || e);
    showError(what);
  }

  // downloadCSV fetches a CSV with the token and saves it under the name the
  // API's Content-Disposition gives.
  async function downloadCSV(path, params, fallbackName) {
    showError('');
    try {
      const resp = await apiFetch(path, Object.assign({}, params, { format: 'csv' }));
      const blob = await resp.blob();
      let name = fallbackName;
      const m = /filename="?([^";]+)"?/.exec(resp.headers.get('Content-Disposition') || '');
      if (m) name = m[1];
      const a = el('a', { href: URL.createObjectURL(blob), download: name, hidden: true });
      document.body.append(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    } catch (e) {
      failed(e);
    }
  }

  // ---- time ----

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  // fmtTime shows an RFC 3339 time in UTC or local time, to the second.
  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    if (isNaN(d)) return s;
    if (!state.local) {
      return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
        pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds()) + 'Z';
    }
    const off = -d.getTimezoneOffset();
    const sign = off < 0 ? '-' : '+';
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + ' ' +
      sign + pad(Math.floor(Math.abs(off) / 60)) + ':' + pad(Math.abs(off) % 60);
  }

  // timeCell is a <time> element for a table.
  function timeCell(s) {
    return s ? el('time', { datetime: s, text: fmtTime(s) }) : '';
  }

  const UNITS = { s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 };

  // parseTime reads the time expressions the API accepts (RFC 3339, a date,
  // now, -2h, 30d, 2w, 1d12h) so that the timeline can draw its axis; the
  // API remains the judge and reports bad input.
  function parseTime(s, now) {
    const v = String(s || '').trim();
    if (!v) return NaN;
    if (v.toLowerCase() === 'now') return now;
    if (/^\d{4}-\d{2}-\d{2}$/.test(v)) return Date.parse(v + 'T00:00:00Z');
    if (/^\d{4}-\d{2}-\d{2}T/.test(v)) return Date.parse(v);
    let sign = -1, rest = v;
    if (rest[0] === '+') { sign = 1; rest = rest.slice(1); } else if (rest[0] === '-') rest = rest.slice(1);
    const re = /(\d+(?:\.\d+)?)(ms|us|µs|ns|[wdhms])/gy;
    let total = 0, m, end = 0;
    while ((m = re.exec(rest))) {
      const unit = { ms: 1, us: 1e-3, 'µs': 1e-3, ns: 1e-6 }[m[2]] || UNITS[m[2]];
      total += parseFloat(m[1]) * unit;
      end = re.lastIndex;
    }
    if (end !== rest.length || total <= 0) return NaN;
    return now + sign * total;
  }

  // ---- routing ----

  function parseHash() {
    const h = location.hash.replace(/^#\/?/, '');
    const [path, query] = h.split('?', 2);
    return { view: path || 'search', params: new URLSearchParams(query || '') };
  }

  // go navigates to a view; the URL is the view's whole state.
  function go(view, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.forEach((x) => x && q.append(k, x));
      else if (v) q.set(k, v);
    }
    const s = q.toString();
    const target = '#/' + view + (s ? '?' + s : '');
    if (location.hash === target) route();
    else location.hash = target;
  }

  function link(view, params, text) {
    const q = new URLSearchParams(params).toString();
    return el('a', { href: '#/' + view + (q ? '?' + q : ''), text });
  }

  const VIEWS = {};

  function route() {
    showError('');
    state.render = null;
    state.seq++;
    const view = $('view');
    view.replaceChildren();
    if (!state.token) {
      showSignIn();
      return;
    }
    $('signin').hidden = true;
    const { view: name, params } = parseHash();
    const v = VIEWS[name];
    if (!v) {
      showError('No view named "' + name + '": pick one from the menu.');
      return;
    }
    for (const a of document.querySelectorAll('#nav a')) {
      const target = a.getAttribute('href').replace(/^#\/?/, '').split('?')[0] || 'search';
      if (target === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = 'sessionaudit – ' + v.title;
    v.show(view, params, state.seq);
  }

  // ---- sign-in ----

  function showSignIn() {
    $('signin').hidden = false;
    $('nav').hidden = true;
    $('signout').hidden = true;
    $('who-am-i').textContent = '';
    $('token').focus();
  }

  // checkToken asks the API who the token is: /api/v1/whoami, or, where the
  // API has none, a one-row host list.
  async function checkToken(token) {
    try {
      return await api('/api/v1/whoami', {}, token);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        await api('/api/v1/hosts', { page_size: 1 }, token);
        return { name: '', role: '' };
      }
      throw e;
    }
  }

  async function signIn(ev) {
    ev.preventDefault();
    const input = $('token');
    const token = input.value.trim();
    showError('');
    if (!token) {
      showError('Enter an API token.');
      return;
    }
    try {
      const me = await checkToken(token);
      state.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = '';
      signedIn(me);
      route();
    } catch (e) {
      const why = e instanceof ApiError && e.status === 401
        ? 'The collector refused this token: ' + e.message
        : 'Could not check the token: ' + e.message;
      showError(why);
      input.select();
    }
  }

  function signedIn(me) {
    $('nav').hidden = false;
    $('signout').hidden = false;
    $('who-am-i').textContent = me && me.name ? me.name + (me.role ? ' (' + me.role + ')' : '') : '';
  }

  function signOut(msg) {
    state.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    $('view').replaceChildren();
    showSignIn();
    showError(msg || '');
  }

  // ---- the time zone toggle ----

  function showTZ() {
    const b = $('tz');
    b.textContent = state.local ? 'Times: local' : 'Times: UTC';
    b.setAttribute('aria-pressed', String(state.local));
  }

  function toggleTZ() {
    state.local = !state.local;
    localStorage.setItem(TZ_KEY, state.local ? 'local' : 'utc');
    showTZ();
    if (state.render) state.render();
  }

  // ---- building blocks of views ----

  // form makes a view's parameter form; submitting it navigates to the
  // view with the new parameters.
  function form(view, fields, params, label) {
    const f = el('form', { class: 'params', 'aria-label': label || 'Query' });
    for (const fd of fields) {
      const id = 'f-' + fd.name;
      let input;
      if (fd.options) {
        input = el('select', { id, name: fd.name },
          fd.options.map((o) => el('option', { value: o, text: o || 'any', selected: (params.get(fd.name) || '') === o })));
      } else {
        input = el('input', {
          id, name: fd.name, type: 'text', value: params.get(fd.name) || fd.value || '',
          placeholder: fd.placeholder || '', required: fd.required, spellcheck: 'false', autocomplete: 'off',
        });
      }
      f.append(el('label', { for: id }, fd.label), input);
    }
    f.append(el('button', { type: 'submit', text: 'Show' }));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const p = {};
      for (const fd of fields) p[fd.name] = f.elements[fd.name].value.trim();
      go(view, p);
    });
    return f;
  }

  // table makes a table of rows with the given columns; a column's cell
  // function returns a string or an element.
  function table(caption, columns, rows) {
    return el('table', {},
      el('caption', { text: caption }),
      el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col', text: c.title })))),
      el('tbody', {}, rows.map((r) => el('tr', {}, columns.map((c) => el('td', { class: c.class }, c.cell(r)))))));
  }

  const hostLink = (h, since) => h ? link('host', { host: h, since: since || '7d' }, h) : '';
  const accountLink = (a, since) => a ? link('timeline', { account: a, since: since || '30d' }, a) : '';

  function logonColumns(since) {
    return [
      { title: 'Host', cell: (r) => hostLink(r.host, since) },
      { title: 'Account', cell: (r) => accountLink(r.account, since) },
      { title: 'Type', cell: (r) => el('span', { class: 'type lt-' + typeClass(r.logon_type), text: r.logon_type || '?' }) },
      { title: 'Package', cell: (r) => r.authentication_package },
      { title: 'Start', cell: (r) => timeCell(r.start) },
      { title: 'Last seen', cell: (r) => timeCell(r.last_seen) },
      { title: 'Ended before', cell: (r) => lingerCell(r, r.open ? el('span', { class: 'open', text: 'open' }) : timeCell(r.end_before)) },
      { title: 'Logon ID', cell: (r) => r.logon_id, class: 'mono' },
    ];
  }

  function serverColumns(since) {
    return [
      { title: 'To host', cell: (r) => hostLink(r.host, since) },
      { title: 'From computer', cell: (r) => r.from_computer ? link('smb', { from: r.from_computer, since: since || '7d' }, r.from_computer) : '' },
      { title: 'User', cell: (r) => r.user_name },
      { title: 'Client', cell: (r) => r.client_type },
      { title: 'Start', cell: (r) => timeCell(r.start) },
      { title: 'Last seen', cell: (r) => timeCell(r.last_seen) },
      { title: 'Ended before', cell: (r) => r.open ? el('span', { class: 'open', text: 'open' }) : timeCell(r.end_before) },
    ];
  }

  const typeClass = (t) => LOGON_TYPES.includes(t) ? t : 'other';

  // lingerCell adds "lingering since T" to the end cell of a logon session
  // the agent saw lingering: no process left, kept by LSA because a token
  // to it is open; the user has most likely logged off.
  function lingerCell(r, end) {
    if (!r.lingering_since) return end;
    return el('span', {}, [end, ' ', el('span', { class: 'lingering', title: 'No process left in this session since then: kept alive by an open token, most likely logged off', text: 'lingering since ' + fmtTime(r.lingering_since) })]);
  }

  function csvButton(path, params, name) {
    return el('button', { type: 'button', class: 'csv', text: 'Export CSV', onclick: () => downloadCSV(path, params, name) });
  }

  // pager loads pages of a list, calling onRows with all rows so far after
  // each; it returns the row count (countOf, else the rows of key) and the
  // "More" button.
  function pager(seq, path, params, key, onRows, countOf) {
    const more = el('button', { type: 'button', class: 'more', text: 'More', hidden: true });
    const status = el('span', { class: 'count' });
    let token = '';
    let all = [];
    async function load() {
      more.disabled = true;
      status.textContent = 'Loading…';
      try {
        const body = await api(path, Object.assign({}, params, { page_size: PAGE_SIZE, page_token: token }));
        if (seq !== state.seq) return;
        all = all.concat(body[key] || []);
        token = body.next_page_token || '';
        more.hidden = !token;
        onRows(all, body);
        const n = countOf ? countOf() : all.length;
        status.textContent = n + (n === 1 ? ' row' : ' rows') + (token ? ', more available' : '');
      } catch (e) {
        if (seq !== state.seq) return;
        status.textContent = '';
        failed(e);
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener('click', load);
    load();
    return el('div', { class: 'pager' }, status, more);
  }

  // ---- the timeline ----

  const STEPS = [6e4, 3e5, 9e5, 18e5, 36e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5, 12096e5, 2592e6];

  // timeline draws intervals as bars over a time axis, one lane per laneOf
  // value. Each row is {start, last_seen, end_before, open, cls, title}.
  function timeline(rows, laneOf, range, label) {
    const now = Date.now();
    const lanes = [...new Set(rows.map(laneOf))].sort((a, b) => a.localeCompare(b));
    let lo = range.from, hi = range.to;
    // Fit the axis to the data inside the range, so that a day of sessions
    // asked over 30 days is not a sliver.
    if (rows.length) {
      const starts = rows.map((r) => Date.parse(r.start)).filter((x) => !isNaN(x));
      const ends = rows.map((r) => r.open ? now : Date.parse(r.end_before || r.last_seen)).filter((x) => !isNaN(x));
      const dlo = Math.min(...starts), dhi = Math.max(...ends);
      if (isNaN(lo) || dlo > lo) lo = dlo;
      if (isNaN(hi) || dhi < hi) hi = dhi;
    }
    if (isNaN(lo) || isNaN(hi) || hi <= lo) { lo = (isNaN(lo) ? now : lo) - 36e5; hi = lo + 72e5; }
    const pad = (hi - lo) * 0.02;
    lo -= pad; hi += pad;

    const W = 1100, LABEL = 190, RIGHT = 16, LANE = 22, TOP = 34;
    const H = TOP + Math.max(lanes.length, 1) * LANE + 8;
    const x = (t) => LABEL + (Math.min(Math.max(t, lo), hi) - lo) / (hi - lo) * (W - LABEL - RIGHT);
    const root = svg('svg', {
      class: 'timeline', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H,
      role: 'img', 'aria-label': label,
    });
    root.append(svg('title', { text: label }));
    root.append(svg('defs', {},
      svg('pattern', { id: 'hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
        svg('rect', { width: 6, height: 6, class: 'hatch-bg' }),
        svg('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' })),
      svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 1, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' },
        svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))));

    // Axis: ticks at a step giving about eight labels.
    const axis = svg('g', { class: 'axis' });
    const step = STEPS.find((s) => (hi - lo) / s <= 8) || STEPS[STEPS.length - 1];
    const offset = state.local ? -new Date(lo).getTimezoneOffset() * 6e4 : 0;
    let t = Math.ceil((lo + offset) / step) * step - offset;
    for (; t <= hi; t += step) {
      const X = x(t);
      axis.append(svg('line', { x1: X, y1: TOP - 6, x2: X, y2: H - 8, class: 'grid' }));
      const s = fmtTime(new Date(t).toISOString());
      const short = step >= 864e5 ? s.slice(0, 10) : s.slice(5, 16);
      axis.append(svg('text', { x: X, y: TOP - 10, class: 'tick', 'text-anchor': 'middle', text: short }));
    }
    const zone = state.local ? 'local time' : 'UTC';
    axis.append(svg('text', { x: LABEL - 8, y: TOP - 10, class: 'tick zone', 'text-anchor': 'end', text: zone }));
    root.append(axis);

    lanes.forEach((lane, i) => {
      const y = TOP + i * LANE;
      root.append(svg('rect', { x: 0, y, width: W, height: LANE, class: i % 2 ? 'lane odd' : 'lane' }));
      // A long name is cut to fit; its whole text is the tooltip.
      const shown = lane.length > 27 ? lane.slice(0, 26) + '…' : lane;
      const name = svg('text', { x: LABEL - 8, y: y + LANE / 2 + 4, class: 'lane-label', 'text-anchor': 'end', text: shown });
      name.append(svg('title', { text: lane }));
      root.append(name);
    });
    if (!lanes.length) {
      root.append(svg('text', { x: W / 2, y: TOP + 15, 'text-anchor': 'middle', class: 'empty', text: 'No sessions in this range.' }));
    }

    const laneIndex = new Map(lanes.map((l, i) => [l, i]));
    for (const r of rows) {
      const y = TOP + laneIndex.get(laneOf(r)) * LANE + 4, h = LANE - 8;
      const start = Date.parse(r.start);
      const seen = Date.parse(r.last_seen || r.start);
      const g = svg('g', { class: 'session', tabindex: 0, 'data-open': String(!!r.open) });
      g.append(svg('title', { text: r.title }));
      const x0 = x(isNaN(start) ? seen : start);
      const x1 = x(r.open ? now : seen);
      g.append(svg('rect', { x: x0, y, width: Math.max(x1 - x0, 2), height: h, rx: 2, class: 'bar ' + r.cls }));
      if (r.open) {
        const xe = Math.max(x1, x0 + 2);
        g.append(svg('line', { x1: xe, y1: y + h / 2, x2: xe + 6, y2: y + h / 2, class: 'open-marker', 'marker-end': 'url(#arrow)' }));
      } else if (r.end_before) {
        const xb = x(Date.parse(r.end_before));
        if (xb > x1) {
          g.append(svg('rect', { x: x1, y, width: Math.max(xb - x1, 1), height: h, class: 'uncertain ' + r.cls }));
          g.append(svg('rect', { x: x1, y, width: Math.max(xb - x1, 1), height: h, class: 'uncertain-hatch', fill: 'url(#hatch)' }));
        }
      }
      if (r.onclick) g.addEventListener('click', r.onclick);
      if (r.onclick) g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') r.onclick(); });
      root.append(g);
    }
    return el('div', { class: 'timeline-wrap' }, root);
  }

  function legend(types, extra) {
    return el('ul', { class: 'legend', 'aria-label': 'Legend' },
      types.map((t) => el('li', {}, el('span', { class: 'swatch lt-' + typeClass(t) }), t || 'unknown')),
      el('li', {}, el('span', { class: 'swatch uncertain-swatch' }), 'end lies in this span (last seen → ended before)'),
      el('li', {}, el('span', { class: 'swatch open-swatch' }), 'open now'),
      extra || []);
  }

  function logonBars(rows, hostView) {
    return rows.map((r) => ({
      start: r.start, last_seen: r.last_seen, end_before: r.end_before, open: r.open,
      cls: 'lt-' + typeClass(r.logon_type),
      title: (r.account || '(no account)') + ' on ' + r.host + ', ' + (r.logon_type || '?') + ', ' + fmtTime(r.start) + ' → ' +
        (r.open ? 'open (last seen ' + fmtTime(r.last_seen) + ')' : 'ended between ' + fmtTime(r.last_seen) + ' and ' + fmtTime(r.end_before)) +
        (r.lingering_since ? ', lingering since ' + fmtTime(r.lingering_since) + ' (no process left)' : ''),
      onclick: () => go('who', { host: r.host, at: r.start }),
      lane: hostView ? (r.account || '(no account)') : r.host,
    }));
  }

  // rangeOf reads since and until for the axis.
  function rangeOf(params) {
    const now = Date.now();
    return { from: parseTime(params.get('since'), now), to: params.get('until') ? parseTime(params.get('until'), now) : now };
  }

  // logonTimelineView is the account timeline (lanes per host) and the host
  // timeline (lanes per account).
  function logonTimelineView(hostView) {
    return function (view, params, seq) {
      const key = hostView ? 'host' : 'account';
      const fields = [
        hostView ? { name: 'host', label: 'Host', required: true, placeholder: 'WS01' }
          : { name: 'account', label: 'Account', required: true, placeholder: 'CONTOSO\\alice' },
        { name: 'since', label: 'Since', value: '', placeholder: hostView ? '7d' : '30d' },
        { name: 'until', label: 'Until', placeholder: 'now' },
        { name: 'type', label: 'Logon type', options: [''].concat(LOGON_TYPES) },
        { name: 'package', label: 'Package', placeholder: 'Kerberos' },
      ];
      const subject = params.get(key) || '';
      view.append(el('h1', { text: hostView ? 'Host timeline' : 'Account timeline' }));
      if (!params.get('since')) params.set('since', hostView ? '7d' : '30d');
      view.append(form(hostView ? 'host' : 'timeline', fields, params));
      if (!subject) return;
      const q = {
        since: params.get('since'), until: params.get('until'), [key]: subject,
        type: params.getAll('type'), package: params.get('package'),
      };
      const out = el('div', { class: 'result' });
      const actions = el('div', { class: 'actions' },
        csvButton('/api/v1/export', Object.assign({ kind: 'logon' }, q), 'logon-sessions.csv'),
        hostView ? link('who', { host: subject, at: 'now' }, 'Who is on ' + subject + ' now') : '',
        hostView ? link('smb', { to: subject, since: q.since }, 'SMB sessions to ' + subject) : '');
      view.append(actions, out);
      let rows = [];
      const draw = () => {
        const bars = logonBars(rows, hostView);
        const types = [...new Set(rows.map((r) => r.logon_type))].sort();
        out.replaceChildren(
          timeline(bars, (b) => b.lane, rangeOf(params),
            (hostView ? 'Logon sessions on ' : 'Logon sessions of ') + subject + ', one lane per ' + (hostView ? 'account' : 'host')),
          legend(types),
          table((hostView ? 'Logon sessions on ' : 'Logon sessions of ') + subject, logonColumns(q.since), rows));
      };
      actions.append(pager(seq, '/api/v1/logon-sessions', q, 'logon_sessions', (all) => { rows = all; draw(); }));
      state.render = draw;
    };
  }

  // ---- views ----

  VIEWS.search = {
    title: 'Search',
    show(view, params, seq) {
      view.append(el('h1', { text: 'Search' }));
      const f = el('form', { class: 'params search', role: 'search' },
        el('label', { for: 'q', text: 'Host, account (DOMAIN\\name) or source computer' }),
        el('input', { id: 'q', name: 'q', type: 'search', value: params.get('q') || '', required: true, spellcheck: 'false', autocomplete: 'off', placeholder: 'WS01, CONTOSO\\alice, 10.0.0.7' }),
        el('label', { for: 'q-since', text: 'Since' }),
        el('input', { id: 'q-since', name: 'since', type: 'text', value: params.get('since') || '30d' }),
        el('button', { type: 'submit', text: 'Search' }));
      f.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const q = f.elements.q.value.trim();
        const since = f.elements.since.value.trim() || '30d';
        if (q.includes('\\')) go('timeline', { account: q, since });
        else go('search', { q, since });
      });
      view.append(f);
      const q = params.get('q');
      if (!q) {
        view.append(el('p', { class: 'hint', text: 'An account contains a backslash (CONTOSO\\alice) and opens its timeline; anything else is looked up as a host and as the source computer of SMB sessions.' }));
        return;
      }
      if (q.includes('\\')) { go('timeline', { account: q, since: params.get('since') || '30d' }); return; }
      const since = params.get('since') || '30d';
      const list = el('ul', { class: 'matches' });
      view.append(el('h2', { text: 'Matches for ' + q }), list);
      const probes = [
        api('/api/v1/logon-sessions', { host: q, since, page_size: 1 }).then((b) =>
          (b.logon_sessions || []).length ? link('host', { host: q, since }, 'Host ' + q + ': logon sessions timeline') : null),
        api('/api/v1/server-sessions', { from: q, since, page_size: 1 }).then((b) =>
          (b.server_sessions || []).length ? link('smb', { from: q, since }, 'Source computer ' + q + ': SMB sessions it opened') : null),
        api('/api/v1/server-sessions', { to: q, since, page_size: 1 }).then((b) =>
          (b.server_sessions || []).length ? link('smb', { to: q, since }, 'Host ' + q + ': SMB sessions to it') : null),
        api('/api/v1/hosts', { page_size: 1000 }).then((b) => {
          const needle = q.toLowerCase();
          return (b.hosts || []).filter((h) => h.host.toLowerCase().includes(needle) && h.host.toLowerCase() !== needle)
            .slice(0, 20).map((h) => link('host', { host: h.host, since }, 'Host ' + h.host));
        }),
      ];
      Promise.allSettled(probes).then((res) => {
        if (seq !== state.seq) return;
        let n = 0;
        for (const r of res) {
          if (r.status === 'rejected') { failed(r.reason); continue; }
          for (const a of [].concat(r.value || [])) { list.append(el('li', {}, a)); n++; }
        }
        if (!n) list.append(el('li', { text: 'Nothing seen since ' + since + ' for ' + q + '.' }));
      });
    },
  };

  VIEWS.timeline = { title: 'Account timeline', show: logonTimelineView(false) };
  VIEWS.host = { title: 'Host timeline', show: logonTimelineView(true) };

  VIEWS.who = {
    title: 'Who was on',
    show(view, params, seq) {
      view.append(el('h1', { text: 'Who was on a host' }));
      view.append(form('who', [
        { name: 'host', label: 'Host', required: true, placeholder: 'FS01' },
        { name: 'at', label: 'At', placeholder: '2026-03-01T08:00:00Z, now, -2h', value: 'now' },
      ], params));
      const host = params.get('host');
      if (!host) return;
      const at = params.get('at') || 'now';
      const out = el('div', { class: 'result' });
      view.append(el('div', { class: 'actions' },
        csvButton('/api/v1/who', { host, at, kind: 'logon' }, 'who-logon.csv'),
        el('button', { type: 'button', class: 'csv', text: 'Export SMB CSV', onclick: () => downloadCSV('/api/v1/who', { host, at, kind: 'server' }, 'who-server.csv') }),
        link('host', { host, since: '7d' }, 'Timeline of ' + host)), out);
      let logons = [], servers = [];
      const draw = () => out.replaceChildren(
        table('Logon sessions on ' + host + ' at ' + fmtTime(atISO), logonColumns(), logons),
        table('SMB sessions to ' + host + ' at ' + fmtTime(atISO), serverColumns(), servers));
      const atMs = parseTime(at, Date.now());
      const atISO = isNaN(atMs) ? at : new Date(atMs).toISOString();
      view.querySelector('.actions').append(pager(seq, '/api/v1/who', { host, at }, 'logon_sessions', (all, body) => {
        logons = all;
        servers = servers.concat(body.server_sessions || []);
        draw();
      }, () => logons.length + servers.length));
      state.render = draw;
    },
  };

  VIEWS.open = {
    title: 'Open sessions',
    show(view, params, seq) {
      view.append(el('h1', { text: 'Sessions open now' }));
      view.append(form('open', [
        { name: 'type', label: 'Logon type', options: [''].concat(LOGON_TYPES) },
        { name: 'host', label: 'Host' },
        { name: 'account', label: 'Account' },
        { name: 'package', label: 'Package' },
      ], params));
      const q = { type: params.getAll('type'), host: params.get('host'), account: params.get('account'), package: params.get('package') };
      const out = el('div', { class: 'result' });
      view.append(el('div', { class: 'actions' }, csvButton('/api/v1/open-sessions', Object.assign({ page_size: 1000 }, q), 'open-sessions.csv')), out);
      let rows = [];
      const draw = () => out.replaceChildren(
        timeline(logonBars(rows, false), (b) => b.lane, { from: NaN, to: Date.now() }, 'Open logon sessions, one lane per host'),
        legend([...new Set(rows.map((r) => r.logon_type))].sort()),
        table('Open logon sessions', logonColumns(), rows));
      view.querySelector('.actions').append(pager(seq, '/api/v1/open-sessions', q, 'logon_sessions', (all) => { rows = all; draw(); }));
      state.render = draw;
    },
  };

  VIEWS.smb = {
    title: 'SMB sessions',
    show(view, params, seq) {
      view.append(el('h1', { text: 'SMB sessions' }));
      if (!params.get('since')) params.set('since', '7d');
      view.append(form('smb', [
        { name: 'from', label: 'From computer', placeholder: 'PC7, 10.0.0.7' },
        { name: 'user', label: 'User' },
        { name: 'to', label: 'To host' },
        { name: 'since', label: 'Since' },
        { name: 'until', label: 'Until', placeholder: 'now' },
      ], params));
      const q = { from: params.get('from'), user: params.get('user'), to: params.get('to'), since: params.get('since'), until: params.get('until') };
      const out = el('div', { class: 'result' });
      view.append(el('div', { class: 'actions' }, csvButton('/api/v1/export', Object.assign({ kind: 'server' }, q), 'server-sessions.csv')), out);
      let rows = [];
      // Lanes: the hosts reached when asking about a source, else the
      // sources.
      const laneOf = q.from ? (r) => r.host : (r) => r.from_computer + (r.user_name ? ' / ' + r.user_name : '') + (q.to ? '' : ' → ' + r.host);
      const draw = () => out.replaceChildren(
        timeline(rows.map((r) => ({
          start: r.start, last_seen: r.last_seen, end_before: r.end_before, open: r.open, cls: 'smb', lane: laneOf(r),
          title: r.from_computer + ' (' + r.user_name + ') → ' + r.host + ', ' + fmtTime(r.start) + ' → ' +
            (r.open ? 'open' : 'ended between ' + fmtTime(r.last_seen) + ' and ' + fmtTime(r.end_before)),
          onclick: () => go('who', { host: r.host, at: r.start }),
        })), (b) => b.lane, rangeOf(params), 'SMB sessions, one lane per ' + (q.from ? 'host' : 'source')),
        legend([], el('li', {}, el('span', { class: 'swatch smb' }), 'SMB session')),
        table('SMB sessions', serverColumns(q.since), rows));
      view.querySelector('.actions').append(pager(seq, '/api/v1/server-sessions', q, 'server_sessions', (all) => { rows = all; draw(); }));
      state.render = draw;
    },
  };

  VIEWS.hosts = {
    title: 'Hosts',
    show(view, params, seq) {
      view.append(el('h1', { text: 'Hosts' }));
      view.append(form('hosts', [{ name: 'stale', label: 'Silent for at least', placeholder: '1h' }], params));
      const q = { stale: params.get('stale') };
      const out = el('div', { class: 'result' });
      view.append(el('div', { class: 'actions' }, csvButton('/api/v1/hosts', Object.assign({ page_size: 1000 }, q), 'hosts.csv')), out);
      let rows = [];
      const draw = () => out.replaceChildren(table(q.stale ? 'Hosts silent for ' + q.stale : 'Hosts', [
        { title: 'Host', cell: (r) => hostLink(r.host) },
        { title: 'Domain', cell: (r) => r.host_domain },
        { title: 'OS', cell: (r) => r.os },
        { title: 'Agent', cell: (r) => r.agent_version },
        { title: 'Last boot', cell: (r) => timeCell(r.last_boot_time) },
        { title: 'Last seen', cell: (r) => timeCell(r.last_seen) },
        { title: 'Open logons', cell: (r) => r.host ? link('open', { host: r.host }, String(r.open_logon_sessions)) : String(r.open_logon_sessions), class: 'num' },
        { title: 'Open SMB', cell: (r) => String(r.open_server_sessions), class: 'num' },
      ], rows));
      view.querySelector('.actions').append(pager(seq, '/api/v1/hosts', q, 'hosts', (all) => { rows = all; draw(); }));
      state.render = draw;
    },
  };

  // ---- start ----

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut(''));
    $('tz').addEventListener('click', toggleTZ);
    window.addEventListener('hashchange', route);
    showTZ();
    if (state.token) {
      checkToken(state.token).then((me) => { signedIn(me); }, (e) => failed(e));
      signedIn(null);
    }
    route();
  });
})();
