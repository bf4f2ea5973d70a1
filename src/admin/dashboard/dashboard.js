// logmta dashboard (browser side, plain JS, no build step). Polls /api/stats every few seconds
// and keeps the history here, in the page (the daemon keeps none): queue depth per lane,
// throughput and group-commit latency are differences between successive polls of cumulative
// counters. Message ids link to /api/message/ID (the data of `logmta queue show`).
// A token configured for the HTTP admin is taken from the URL fragment (#token=...) once and
// kept in sessionStorage; it is sent as a bearer token, never put in a URL we request.
// Query parameters: ?interval=MS (poll period, default 3000), ?points=N (history, default 200).
(() => {
  const params = new URLSearchParams(location.search);
  const INTERVAL = Math.max(250, Number(params.get('interval')) || 3000);
  const POINTS = Math.max(10, Number(params.get('points')) || 200);
  const PALETTE = [
    '#2f6fde',
    '#1f9d55',
    '#d98a00',
    '#8e44ad',
    '#d64545',
    '#16a2b8',
    '#7f8c8d',
    '#c0392b',
    '#2c3e50',
  ];

  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get('token')) {
    sessionStorage.setItem('logmta-token', hash.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  const token = sessionStorage.getItem('logmta-token');

  const $ = (id) => document.getElementById(id);
  const state = { polls: 0, errors: 0, prev: null, lanes: new Map(), lastFsync: undefined };

  function api(path) {
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    return fetch(path, { headers, cache: 'no-store' }).then(async (r) => {
      if (r.ok) return r.json();
      let why = `${r.status} ${r.statusText}`;
      try {
        const b = await r.json();
        const msg = b?.error?.message ?? b?.error;
        if (typeof msg === 'string') why = `${r.status}: ${msg}`;
      } catch {
        // not JSON
      }
      const e = new Error(why);
      e.status = r.status;
      throw e;
    });
  }

  function age(ms) {
    if (!(ms > 0)) return '–';
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(0)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }
  const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en', { maximumFractionDigits: d }) : '–');
  const clock = (t) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
    return e;
  }

  function msgLink(id) {
    return el(
      'a',
      {
        href: `#msg=${encodeURIComponent(id)}`,
        class: 'mono',
        onclick: (ev) => {
          ev.preventDefault();
          showMessage(id);
        },
      },
      id,
    );
  }

  function fillRows(tbody, rows, cols) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      tbody.append(el('tr', {}, el('td', { class: 'empty', colspan: String(cols) }, 'none')));
      return;
    }
    for (const cells of rows) {
      tbody.append(
        el('tr', {}, ...cells.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : el('td', {}, c)))),
      );
    }
  }
  const num = (v) => el('td', { class: 'num' }, v);

  // ------------------------------------------------------------------ charts

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = '#6b7785';
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  const lineOpts = (yTitle, extra = {}) => ({
    responsive: true,
    interaction: { mode: 'index', intersect: false },
    elements: {
      point: { radius: 0, hitRadius: 6 },
      line: { borderWidth: 2, cubicInterpolationMode: 'monotone' },
    },
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
    scales: {
      x: { ticks: { maxTicksLimit: 8, maxRotation: 0 }, grid: { display: false } },
      y: { beginAtZero: true, title: { display: true, text: yTitle }, ticks: { precision: 0 } },
      ...extra,
    },
  });

  const charts = {
    depth: new Chart($('chart-depth'), {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: lineOpts('pieces'),
    }),
    throughput: new Chart($('chart-throughput'), {
      type: 'line',
      data: {
        labels: [],
        datasets: [
          { label: 'received', data: [], borderColor: PALETTE[0], backgroundColor: PALETTE[0] },
          { label: 'delivered', data: [], borderColor: PALETTE[1], backgroundColor: PALETTE[1] },
          { label: 'deferred', data: [], borderColor: PALETTE[2], backgroundColor: PALETTE[2] },
          { label: 'failed (bounced)', data: [], borderColor: PALETTE[4], backgroundColor: PALETTE[4] },
        ],
      },
      options: lineOpts('per second'),
    }),
    fsync: new Chart($('chart-fsync'), {
      type: 'line',
      data: {
        labels: [],
        datasets: [
          {
            label: 'fsync ms (mean)',
            data: [],
            borderColor: PALETTE[3],
            backgroundColor: PALETTE[3],
            yAxisID: 'y',
          },
          {
            label: 'records / batch',
            data: [],
            borderColor: PALETTE[5],
            backgroundColor: PALETTE[5],
            borderDash: [4, 3],
            yAxisID: 'y1',
          },
        ],
      },
      options: lineOpts('ms', {
        y1: {
          position: 'right',
          beginAtZero: true,
          grid: { drawOnChartArea: false },
          title: { display: true, text: 'records' },
        },
      }),
    }),
    held: new Chart($('chart-held'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'pieces', data: [], backgroundColor: PALETTE[2] }] },
      options: {
        indexAxis: 'y',
        plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { grid: { display: false } } },
      },
    }),
  };
  charts.fsync.options.scales.y.ticks.precision = 2;

  function push(chart, label, values) {
    chart.data.labels.push(label);
    chart.data.datasets.forEach((ds, i) => {
      ds.data.push(values[i] ?? 0);
    });
    if (chart.data.labels.length > POINTS) {
      chart.data.labels.shift();
      for (const ds of chart.data.datasets) ds.data.shift();
    }
  }

  function updateDepth(s, label) {
    const chart = charts.depth;
    // One dataset per lane ever seen; a lane that disappears drops to 0 rather than vanishing.
    const seen = new Set();
    for (const l of s.lanes) {
      if (l.kind === 'held') continue; // shown per domain in its own card
      seen.add(l.lane);
      if (!state.lanes.has(l.lane)) {
        const color = PALETTE[state.lanes.size % PALETTE.length];
        const ds = {
          label: l.lane,
          data: chart.data.labels.map(() => 0),
          borderColor: color,
          backgroundColor: color,
        };
        state.lanes.set(l.lane, ds);
        chart.data.datasets.push(ds);
      }
    }
    const held = s.held.reduce((n, h) => n + h.count, 0);
    if (!state.lanes.has('held (all domains)')) {
      const color = '#7f8c8d';
      const ds = {
        label: 'held (all domains)',
        data: chart.data.labels.map(() => 0),
        borderColor: color,
        backgroundColor: color,
        borderDash: [5, 4],
      };
      state.lanes.set('held (all domains)', ds);
      chart.data.datasets.push(ds);
    }
    const byLane = new Map(s.lanes.map((l) => [l.lane, l.live]));
    chart.data.labels.push(label);
    for (const [name, ds] of state.lanes)
      ds.data.push(name === 'held (all domains)' ? held : (byLane.get(name) ?? 0));
    if (chart.data.labels.length > POINTS) {
      chart.data.labels.shift();
      for (const ds of chart.data.datasets) ds.data.shift();
    }
    chart.update();
  }

  function update(s) {
    const label = clock(s.time);
    const prev = state.prev;
    const dt = prev ? Math.max(0.001, (s.time - prev.time) / 1000) : 0;
    const rate = (k) => (prev ? Math.max(0, (s.totals[k] - prev.totals[k]) / dt) : 0);
    const dSyncs = prev ? s.totals.syncs - prev.totals.syncs : s.totals.syncs;
    const dSyncMs = prev ? s.totals.syncMsSum - prev.totals.syncMsSum : s.totals.syncMsSum;
    const dRecords = prev ? s.totals.batchRecords - prev.totals.batchRecords : s.totals.batchRecords;
    const fsyncMean = dSyncs > 0 ? dSyncMs / dSyncs : 0;
    const perBatch = dSyncs > 0 ? dRecords / dSyncs : 0;

    updateDepth(s, label);
    push(charts.throughput, label, [rate('received'), rate('delivered'), rate('deferred'), rate('failed')]);
    charts.throughput.update();
    push(charts.fsync, label, [fsyncMean, perBatch]);
    charts.fsync.update();
    charts.held.data.labels = s.held.map((h) => h.domain);
    charts.held.data.datasets[0].data = s.held.map((h) => h.count);
    charts.held.update();

    const heldTotal = s.held.reduce((n, h) => n + h.count, 0);
    $('host').textContent = [s.info.hostname, s.info.version].filter(Boolean).join(' · ');
    $('t-messages').textContent = fmt(s.messages);
    $('t-oldest').textContent = age(s.oldestAgeMs);
    $('t-held').textContent = fmt(heldTotal + s.operatorHeld);
    $('t-sessions').textContent = fmt(s.smtpSessions);
    $('t-in').textContent = prev ? fmt(rate('received'), 1) : '–';
    $('t-out').textContent = prev ? fmt(rate('delivered'), 1) : '–';
    if (dSyncs > 0) state.lastFsync = fsyncMean;
    $('t-fsync').textContent = state.lastFsync === undefined ? '–' : `${fmt(state.lastFsync, 2)} ms`;

    fillRows(
      $('held-rows'),
      s.held.map((h) => [h.domain, num(fmt(h.count)), num(age(h.oldestAgeMs))]),
      3,
    );
    fillRows(
      $('busiest-rows'),
      s.busiest.map((d) => [
        d.destination,
        num(fmt(d.attempts)),
        num(fmt(d.delivered)),
        num(fmt(d.deferred)),
        num(fmt(d.failed)),
      ]),
      5,
    );
    fillRows(
      $('pool-rows'),
      [...s.destinations]
        .sort((a, b) => b.active + b.waiting - (a.active + a.waiting))
        .slice(0, 10)
        .map((d) => [d.key, num(d.active), num(d.idle), num(d.waiting)]),
      4,
    );
    fillRows(
      $('failing-rows'),
      s.failing.map((d) => [
        d.destination,
        num(fmt(d.failed + d.deferred)),
        el('td', { class: 'err', title: d.lastError || '' }, d.lastError || ''),
        d.lastErrorId ? msgLink(d.lastErrorId) : '',
      ]),
      4,
    );
    fillRows(
      $('oldest-rows'),
      s.oldest.map((m) => [msgLink(m.id), m.lane, num(age(m.ageMs))]),
      3,
    );
    updateCluster(s.cluster, s.time);
    state.prev = s;
  }

  // The cluster view (only with [cluster]): every node as this node last saw it, and the homes.
  function updateCluster(c, now) {
    $('cluster').hidden = !c;
    if (!c) return;
    $('cluster-redis').textContent = c.redis.up ? '(Redis up)' : '(Redis unreachable: local limits)';
    fillRows(
      $('cluster-nodes'),
      c.nodes.map((n) => [
        n.node === c.node ? `${n.node} (this node)` : n.node,
        el('td', { class: n.alive ? '' : 'err' }, n.alive ? (n.draining ? 'draining' : 'alive') : 'dead'),
        n.smtp,
        num(fmt(n.queue.messages)),
        num(fmt(Object.values(n.held).reduce((a, b) => a + b, 0))),
        num(age(now - n.at)),
      ]),
      6,
    );
    fillRows(
      $('cluster-homes'),
      Object.keys(c.homes)
        .sort()
        .map((d) => [
          d,
          c.homes[d],
          c.nodes
            .filter((n) => (n.held[d] || 0) > 0)
            .map((n) => `${n.node}: ${n.held[d]}`)
            .join(', ') || '–',
        ]),
      3,
    );
  }

  function setStatus(ok, text) {
    $('status-dot').className = `dot ${ok ? 'ok' : 'bad'}`;
    $('status-text').textContent = text;
  }

  function banner(text) {
    const b = $('banner');
    b.hidden = !text;
    b.textContent = text || '';
  }

  async function poll() {
    try {
      const s = await api('/api/stats');
      update(s);
      state.polls++;
      setStatus(true, `live · updated ${clock(s.time)} · every ${INTERVAL / 1000}s`);
      banner('');
    } catch (e) {
      state.errors++;
      setStatus(false, `no data (${e.message})`);
      if (e.status === 401 || e.status === 403)
        banner('The admin listener needs a token: open this page as /dashboard#token=YOUR_TOKEN');
    } finally {
      setTimeout(poll, INTERVAL);
    }
  }

  // ------------------------------------------------------------------ one message (queue show)

  async function showMessage(id) {
    const d = $('message');
    const body = $('message-body');
    $('message-title').textContent = `message ${id}`;
    body.replaceChildren(el('p', { class: 'muted' }, 'loading…'));
    if (!d.open) d.showModal();
    try {
      const m = await api(`/api/message/${encodeURIComponent(id)}`);
      const facts = el('dl', { class: 'facts' });
      const fact = (k, v) => facts.append(el('dt', {}, k), el('dd', {}, v));
      fact('arrived', `${new Date(m.arrival).toLocaleString('en-GB')} (${age(Date.now() - m.arrival)} ago)`);
      fact('sender', m.sender === '' ? '<>' : m.sender);
      fact('size', `${fmt(m.size)} bytes`);
      if (m.client)
        fact(
          'client',
          Object.entries(m.client)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
        );
      if (m.envid) fact('envid', m.envid);
      body.replaceChildren(facts);
      for (const p of m.pieces) {
        body.append(
          el(
            'h3',
            {},
            [
              `piece ${p.piece}`,
              `lane ${p.lane}`,
              `${p.attempts} attempt${p.attempts === 1 ? '' : 's'}`,
              p.active
                ? 'delivering now'
                : p.laneKind === 'retry'
                  ? `next attempt in ${age(p.due - Date.now())}`
                  : '',
            ]
              .filter(Boolean)
              .join(' · '),
          ),
        );
        const rt = el('tbody');
        fillRows(
          rt,
          p.recipients.map((r) => [
            r.address,
            r.state,
            el('td', { class: r.last ? 'err' : '', title: r.last || '' }, r.last || ''),
          ]),
          3,
        );
        body.append(
          el(
            'table',
            {},
            el(
              'thead',
              {},
              el('tr', {}, el('th', {}, 'recipient'), el('th', {}, 'state'), el('th', {}, 'last reply')),
            ),
            rt,
          ),
        );
        const ht = el('tbody');
        fillRows(
          ht,
          p.history.map((h) => [clock(h.t), h.ev, h.detail || '']),
          3,
        );
        body.append(
          el(
            'table',
            { class: 'compact' },
            el(
              'thead',
              {},
              el('tr', {}, el('th', {}, 'time'), el('th', {}, 'event'), el('th', {}, 'detail')),
            ),
            ht,
          ),
        );
      }
    } catch (e) {
      body.replaceChildren(el('p', { class: 'err' }, `cannot show ${id}: ${e.message}`));
    }
  }

  $('message-close').addEventListener('click', () => $('message').close());
  $('lookup').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('lookup-id').value.trim();
    if (id) showMessage(id);
  });
  const linked = new URLSearchParams(location.hash.slice(1)).get('msg');
  if (linked) showMessage(linked);

  // For tests and the curious: the chart instances and poll counters.
  window.logmtaDashboard = { charts, state };
  poll();
})();
