// Warren management UI. One script, no framework, no build step: it renders each page from
// the management HTTP API (the same endpoints rabbitmqadmin uses), authenticating every
// request with HTTP basic auth as RabbitMQ's UI does. Credentials live in sessionStorage,
// so closing the tab logs out.
'use strict';

const REFRESH_MS = 5000;
const $ = (sel) => document.querySelector(sel);
let refreshTimer = null;
let currentRefresh = null;

// ---- helpers -------------------------------------------------------------------------

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
const enc = encodeURIComponent;

function fmtBytes(n) {
  if (n === undefined || n === null) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fmtUptime(ms) {
  let s = Math.floor((ms || 0) / 1000);
  const d = Math.floor(s / 86400); s %= 86400;
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

function flash(text, bad) {
  const f = $('#flash');
  f.textContent = text;
  f.className = bad ? 'bad' : '';
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => f.classList.add('hidden'), 6000);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.reason || body.error)) || `HTTP ${status}`);
    this.status = status;
  }
}

// Calls the API with the stored credentials; a 401 sends the user back to the login form.
async function api(method, path, body, headers) {
  const auth = sessionStorage.getItem('warren-auth');
  // X-Requested-With: the API then leaves out its Basic challenge (no browser login popup).
  const opts = {
    method,
    headers: { Authorization: `Basic ${auth}`, 'X-Requested-With': 'XMLHttpRequest', ...(headers || {}) },
  };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(`api${path}`, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (r.status === 401 && path !== '/whoami') { logout('Session expired or not authorised: ' + ((data && data.reason) || '')); }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// Runs an action from a button or form and reports the outcome.
async function act(fn, ok) {
  try {
    await fn();
    if (ok) flash(ok);
    if (currentRefresh) await currentRefresh();
  } catch (e) {
    flash(e.message, true);
  }
}

function table(cols, rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty || 'Nothing to show.')}</p>`;
  return `<table class="list"><thead><tr>${cols.map((c) => `<th>${esc(c)}</th>`).join('')}</tr></thead>`
    + `<tbody>${rows.map((r) => `<tr>${r.join('')}</tr>`).join('')}</tbody></table>`;
}
const td = (v) => `<td>${esc(v)}</td>`;
const tdNum = (v) => `<td class="num">${esc(v ?? 0)}</td>`;
const tdHtml = (html) => `<td>${html}</td>`;

function vhostSelect(id, vhosts, selected) {
  return `<select id="${id}">${vhosts.map((v) =>
    `<option ${v.name === selected ? 'selected' : ''}>${esc(v.name)}</option>`).join('')}</select>`;
}

// ---- login ---------------------------------------------------------------------------

function logout(message) {
  sessionStorage.removeItem('warren-auth');
  clearInterval(refreshTimer);
  $('#app').classList.add('hidden');
  $('#login').classList.remove('hidden');
  $('#login-error').textContent = message || '';
}

async function login(user, pass) {
  sessionStorage.setItem('warren-auth', btoa(unescape(encodeURIComponent(`${user}:${pass}`))));
  try {
    const me = await api('GET', '/whoami');
    $('#whoami').textContent = `User: ${me.name}`;
    $('#login').classList.add('hidden');
    $('#app').classList.remove('hidden');
    route();
  } catch (e) {
    logout(e.status === 401 ? `Login failed: ${e.message}` : e.message);
  }
}

// ---- pages ---------------------------------------------------------------------------

const rateHistory = [];  // [{t, publish, deliver_get, ack}], newest last
const RATE_SERIES = [['publish', '#3a7bd5'], ['deliver_get', '#27ae60'], ['ack', '#c0392b']];

function drawRates(canvas) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width; const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...rateHistory.flatMap((p) => RATE_SERIES.map(([k]) => p[k])));
  ctx.fillStyle = '#888';
  ctx.fillText(`${max.toFixed(1)}/s`, 4, 12);
  ctx.fillText('0/s', 4, h - 4);
  for (const [key, colour] of RATE_SERIES) {
    ctx.strokeStyle = colour;
    ctx.beginPath();
    rateHistory.forEach((p, i) => {
      const x = 40 + (i / 59) * (w - 50);
      const y = h - 8 - (p[key] / max) * (h - 24);
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

async function overviewPage(main) {
  main.innerHTML = `<h1>Overview</h1>
    <h2>Totals</h2><div id="totals"></div>
    <h2>Message rates</h2>
    <canvas id="rates" width="640" height="160"></canvas>
    <div class="legend">${RATE_SERIES.map(([k, c]) => `<span><i style="background:${c}"></i>${k}</span>`).join('')}
      <span id="rate-now"></span></div>
    <h2>Nodes</h2><div id="nodes"></div>
    <h2>Export / import definitions</h2>
    <div class="box"><button id="export-defs" type="button">Download broker definitions</button>
      <form id="import-form" class="row">Import: <input type="file" id="import-file" accept=".json,application/json">
      <button type="submit">Upload broker definitions</button></form></div>`;
  $('#export-defs').onclick = () => act(async () => {
    const doc = await api('GET', '/definitions');
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' }));
    a.download = 'warren-definitions.json';
    a.click();
  });
  $('#import-form').onsubmit = (ev) => {
    ev.preventDefault();
    const file = $('#import-file').files[0];
    if (!file) return flash('Choose a definitions file first.', true);
    act(async () => api('POST', '/definitions', JSON.parse(await file.text())), 'Definitions imported.');
  };
  return async () => {
    const [ov, nodes] = await Promise.all([api('GET', '/overview'), api('GET', '/nodes')]);
    const t = ov.object_totals; const q = ov.queue_totals;
    $('#totals').innerHTML = table(
      ['Connections', 'Channels', 'Exchanges', 'Queues', 'Consumers', 'Ready', 'Unacked', 'Total'],
      [[tdNum(t.connections), tdNum(t.channels), tdNum(t.exchanges), tdNum(t.queues), tdNum(t.consumers),
        tdNum(q.messages_ready), tdNum(q.messages_unacknowledged), tdNum(q.messages)]]);
    const ms = ov.message_stats || {};
    const rate = (k) => (ms[`${k}_details`] || {}).rate || 0;
    rateHistory.push({ publish: rate('publish'), deliver_get: rate('deliver_get'), ack: rate('ack') });
    while (rateHistory.length > 60) rateHistory.shift();
    drawRates($('#rates'));
    $('#rate-now').textContent = `now: publish ${rate('publish')}/s, deliver ${rate('deliver_get')}/s, ack ${rate('ack')}/s`;
    $('#nodes').innerHTML = table(
      ['Name', 'File descriptors', 'Socket descriptors', 'Threads', 'Memory', 'Disk space', 'Uptime', 'Info'],
      nodes.map((n) => n.running ? [td(n.name), td(`${n.fd_used} / ${n.fd_total}`),
        td(`${n.sockets_used} / ${n.sockets_total}`), tdNum(n.proc_used),
        tdHtml(`${esc(fmtBytes(n.mem_used))} <span class="muted">/ ${esc(fmtBytes(n.mem_limit))} high watermark</span>${n.mem_alarm ? ' <span class="badge warning">alarm</span>' : ''}`),
        tdHtml(`${esc(fmtBytes(n.disk_free))} <span class="muted">/ ${esc(fmtBytes(n.disk_free_limit))} low watermark</span>${n.disk_free_alarm ? ' <span class="badge warning">alarm</span>' : ''}`),
        td(fmtUptime(n.uptime)), td(`${n.rates_mode} ${n.type} ${n.processors} cores`)]
        : [td(n.name), `<td colspan="7" class="error">Node not running</td>`]));
  };
}

async function connectionsPage(main) {
  main.innerHTML = '<h1>Connections</h1><div id="connections"></div>';
  return async () => {
    const conns = await api('GET', '/connections');
    $('#connections').innerHTML = table(
      ['Name', 'User', 'Virtual host', 'State', 'Channels', 'Protocol', 'Client', 'Heartbeat', ''],
      conns.map((c) => {
        const cp = c.client_properties || {};
        return [td(c.name), td(c.user), td(c.vhost), td(c.state), tdNum(c.channels), td(c.protocol),
          td([cp.product, cp.version].filter(Boolean).join(' ')), td(`${c.timeout}s`),
          tdHtml(`<button type="button" data-close="${esc(c.name)}">Close</button>`)];
      }), 'No connections.');
    for (const b of document.querySelectorAll('[data-close]')) {
      b.onclick = () => {
        const reason = prompt(`Close ${b.dataset.close}? Reason:`, 'Closed via management plugin');
        if (reason === null) return;
        act(() => api('DELETE', `/connections/${enc(b.dataset.close)}`, undefined, { 'X-Reason': reason }),
          'Connection closed.');
      };
    }
  };
}

async function channelsPage(main) {
  main.innerHTML = '<h1>Channels</h1><div id="channels"></div>';
  return async () => {
    const chans = await api('GET', '/channels');
    $('#channels').innerHTML = table(
      ['Channel', 'User', 'Virtual host', 'Mode', 'State', 'Consumers', 'Prefetch', 'Unacked'],
      chans.map((c) => [td(c.name), td(c.user), td(c.vhost),
        tdHtml(`${c.confirm ? '<abbr title="Confirm">C</abbr>' : ''}${c.transactional ? '<abbr title="Transactional">T</abbr>' : ''}`),
        td(c.state), tdNum(c.consumer_count),
        td(c.global_prefetch_count ? `${c.prefetch_count} (global ${c.global_prefetch_count})` : c.prefetch_count),
        tdNum(c.messages_unacknowledged)]), 'No channels.');
  };
}

async function exchangesPage(main) {
  main.innerHTML = '<h1>Exchanges</h1><div id="exchanges"></div>';
  return async () => {
    const xs = await api('GET', '/exchanges');
    $('#exchanges').innerHTML = table(['Virtual host', 'Name', 'Type', 'Features'],
      xs.map((x) => [td(x.vhost), td(x.name || '(AMQP default)'), td(x.type),
        tdHtml([x.durable && '<abbr title="durable">D</abbr>', x.auto_delete && '<abbr title="auto-delete">AD</abbr>',
          x.internal && '<abbr title="internal">I</abbr>'].filter(Boolean).join(''))]));
  };
}

// The Node column, as RabbitMQ draws it: leader, `+N` synchronised mirrors, a red `+M` for
// unsynchronised ones (and `+0` first when mirrors exist but none is synchronised).
function nodeCell(q) {
  let html = esc(q.node);
  const mirrors = q.slave_nodes || [];
  if (mirrors.length) {
    const synced = (q.synchronised_slave_nodes || []).filter((n) => mirrors.includes(n));
    const unsynced = mirrors.filter((n) => !synced.includes(n));
    html += ` <span class="badge" title="Synchronised mirrors: ${esc(synced.join(', '))}">+${synced.length}</span>`;
    if (unsynced.length) {
      html += ` <span class="badge warning" title="Unsynchronised mirrors: ${esc(unsynced.join(', '))}">+${unsynced.length}</span>`;
    }
  }
  return html;
}

const ARG_ABBR = {
  'x-message-ttl': 'TTL', 'x-expires': 'Exp', 'x-max-length': 'Lim', 'x-max-length-bytes': 'Lim B',
  'x-dead-letter-exchange': 'DLX', 'x-dead-letter-routing-key': 'DLK', 'x-max-priority': 'Pri',
  'x-queue-master-locator': 'ML', 'x-single-active-consumer': 'SAC', 'x-overflow': 'Ovfl',
};

function featuresCell(q) {
  const parts = [];
  if (q.durable) parts.push('<abbr title="durable: true">D</abbr>');
  if (q.auto_delete) parts.push('<abbr title="auto_delete: true">AD</abbr>');
  if (q.exclusive) parts.push('<abbr title="exclusive: true">Excl</abbr>');
  let other = false;
  for (const [k, v] of Object.entries(q.arguments || {})) {
    if (ARG_ABBR[k]) parts.push(`<abbr title="${esc(k)}: ${esc(JSON.stringify(v))}">${ARG_ABBR[k]}</abbr>`);
    else other = true;
  }
  if (other) parts.push(`<abbr title="${esc(JSON.stringify(q.arguments))}">Args</abbr>`);
  if (q.policy) {
    parts.push(`<a class="policy" href="#/admin/policies/${enc(q.vhost)}/${enc(q.policy)}">${esc(q.policy)}</a>`);
  }
  return parts.join('');
}

async function queuesPage(main) {
  const vhosts = await api('GET', '/vhosts');
  main.innerHTML = `<h1>Queues</h1><div id="queues"></div>
    <h2>Add a new queue</h2>
    <form id="add-queue" class="box inline">
      <label>Virtual host ${vhostSelect('queue-vhost', vhosts, '/')}</label>
      <label>Name <input id="queue-name" required></label>
      <label>Durability <select id="queue-durable"><option value="true">Durable</option><option value="false">Transient</option></select></label>
      <label>Arguments (JSON) <input id="queue-args" placeholder='{"x-message-ttl": 60000}'></label>
      <button type="submit">Add queue</button></form>`;
  $('#add-queue').onsubmit = (ev) => {
    ev.preventDefault();
    act(() => api('PUT', `/queues/${enc($('#queue-vhost').value)}/${enc($('#queue-name').value)}`, {
      durable: $('#queue-durable').value === 'true', auto_delete: false,
      arguments: $('#queue-args').value ? JSON.parse($('#queue-args').value) : {},
    }), 'Queue declared.');
  };
  return async () => {
    const qs = await api('GET', '/queues');
    $('#queues').innerHTML = table(
      ['Virtual host', 'Name', 'Node', 'Features', 'State', 'Ready', 'Unacked', 'Total'],
      qs.map((q) => [td(q.vhost),
        tdHtml(`<a href="#/queues/${enc(q.vhost)}/${enc(q.name)}">${esc(q.name)}</a>`),
        tdHtml(nodeCell(q)), `<td class="features">${featuresCell(q)}</td>`, td(q.state),
        tdNum(q.messages_ready), tdNum(q.messages_unacknowledged), tdNum(q.messages)]), 'No queues.');
    for (const [i, tr] of [...document.querySelectorAll('#queues tbody tr')].entries()) {
      tr.dataset.queue = qs[i].name;
    }
  };
}

async function queuePage(main, vhost, name) {
  const base = `/queues/${enc(vhost)}/${enc(name)}`;
  main.innerHTML = `<h1>Queue ${esc(name)} <span class="muted">in virtual host ${esc(vhost)}</span></h1>
    <div id="queue-facts"></div>
    <h2>Bindings</h2><div id="queue-bindings"></div>
    <h2>Get messages</h2>
    <form id="get-form" class="box inline">
      <label>Ack mode <select id="get-ackmode">
        <option value="ack_requeue_true">Nack message requeue true</option>
        <option value="ack_requeue_false">Automatic ack</option>
        <option value="reject_requeue_true">Reject requeue true</option>
        <option value="reject_requeue_false">Reject requeue false</option></select></label>
      <label>Encoding <select id="get-encoding"><option value="auto">Auto string / base64</option><option value="base64">base64</option></select></label>
      <label>Messages <input id="get-count" type="number" value="1" min="1" style="width:4em"></label>
      <button type="submit">Get Message(s)</button></form>
    <div id="got"></div>
    <h2>Publish message</h2>
    <form id="publish-form" class="box">
      <div class="row"><label>Delivery mode <select id="pub-mode"><option value="1">1 - Non-persistent</option><option value="2">2 - Persistent</option></select></label></div>
      <div class="row"><label>Headers (JSON) <input id="pub-headers" placeholder='{"k": "v"}'></label></div>
      <div class="row"><label>Payload <textarea id="pub-payload"></textarea></label></div>
      <button type="submit">Publish message</button></form>
    <h2>Purge / delete</h2>
    <div class="box"><button id="purge" type="button">Purge Messages</button>
      <button id="delete-queue" type="button">Delete Queue</button></div>`;
  $('#get-form').onsubmit = (ev) => {
    ev.preventDefault();
    act(async () => {
      const msgs = await api('POST', `${base}/get`, {
        count: Number($('#get-count').value), ackmode: $('#get-ackmode').value,
        encoding: $('#get-encoding').value, truncate: 50000,
      });
      $('#got').innerHTML = msgs.length ? msgs.map((m, i) => `<div class="box"><b>Message ${i + 1}</b>
        <table class="facts"><tr><th>Exchange</th><td>${esc(m.exchange || '(AMQP default)')}</td></tr>
        <tr><th>Routing key</th><td>${esc(m.routing_key)}</td></tr>
        <tr><th>Redelivered</th><td>${esc(m.redelivered)}</td></tr>
        <tr><th>Properties</th><td>${esc(JSON.stringify(m.properties))}</td></tr>
        <tr><th>Payload</th><td>${esc(m.payload_bytes)} bytes, encoding: ${esc(m.payload_encoding)}
          <pre class="payload">${esc(m.payload)}</pre></td></tr></table></div>`).join('')
        : '<p class="muted">Queue is empty.</p>';
    });
  };
  $('#publish-form').onsubmit = (ev) => {
    ev.preventDefault();
    const properties = { delivery_mode: Number($('#pub-mode').value) };
    if ($('#pub-headers').value) properties.headers = JSON.parse($('#pub-headers').value);
    act(async () => {
      const r = await api('POST', `/exchanges/${enc(vhost)}/amq.default/publish`, {
        routing_key: name, payload: $('#pub-payload').value, payload_encoding: 'string', properties,
      });
      flash(r.routed ? 'Message published.' : 'Message published, but not routed.', !r.routed);
    });
  };
  $('#purge').onclick = () => act(() => api('DELETE', `${base}/contents`), 'Queue purged.');
  $('#delete-queue').onclick = () => {
    if (!confirm(`Delete queue ${name}?`)) return;
    act(async () => { await api('DELETE', base); location.hash = '#/queues'; }, 'Queue deleted.');
  };
  return async () => {
    const [q, bindings] = await Promise.all([api('GET', base), api('GET', `${base}/bindings`)]);
    const mirrors = q.slave_nodes || [];
    const synced = q.synchronised_slave_nodes || [];
    const facts = [['Features', featuresCell(q)], ['Policy', q.policy ? featuresCell({ policy: q.policy, vhost })
      : '<span class="muted">none</span>'],
    ['Effective policy definition', esc(JSON.stringify(q.effective_policy_definition || {}))],
    ['Node', esc(q.node)],
    ['Mirrors', mirrors.length ? mirrors.map((m) => esc(m) + (synced.includes(m) ? '' : ' <span class="error">(unsynchronised)</span>')).join('<br>')
      + ' <button type="button" id="sync">Synchronise</button>' : '<span class="muted">none</span>'],
    ['State', esc(q.state)], ['Consumers', esc(q.consumers)],
    ['Messages', `ready ${esc(q.messages_ready)}, unacked ${esc(q.messages_unacknowledged)}, total ${esc(q.messages)}`],
    ['Arguments', esc(JSON.stringify(q.arguments))]];
    $('#queue-facts').innerHTML = `<table class="facts">${facts.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join('')}</table>`;
    const sync = $('#sync');
    if (sync) sync.onclick = () => act(() => api('POST', `${base}/actions`, { action: 'sync' }), 'Synchronisation requested.');
    $('#queue-bindings').innerHTML = table(['From', 'Routing key', 'Arguments'],
      bindings.map((b) => [td(b.source || '(Default exchange binding)'), td(b.routing_key), td(JSON.stringify(b.arguments))]));
  };
}

// Policy definition keys with their value types, for the quick-insert links.
const POLICY_KEYS = {
  HA: [['ha-mode', 'string'], ['ha-params', 'number'], ['ha-sync-mode', 'string'],
    ['ha-promote-on-shutdown', 'string'], ['ha-promote-on-failure', 'string'], ['queue-master-locator', 'string']],
  Queues: [['message-ttl', 'number'], ['expires', 'number'], ['max-length', 'number'],
    ['max-length-bytes', 'number'], ['overflow', 'string'], ['dead-letter-exchange', 'string'],
    ['dead-letter-routing-key', 'string'], ['max-priority', 'number']],
  Exchanges: [['alternate-exchange', 'string']],
};

function defRow(key, type, value) {
  const div = document.createElement('div');
  div.className = 'row def-row';
  div.innerHTML = `<input class="def-key" placeholder="key" value="${esc(key)}"> =
    <input class="def-value" placeholder="value" value="${esc(value ?? '')}">
    <select class="def-type">${['string', 'number', 'boolean', 'list'].map((t) =>
    `<option ${t === type ? 'selected' : ''}>${t}</option>`).join('')}</select>`;
  return div;
}

// Puts `key` in the first empty row (or a new one), as RabbitMQ's quick-insert links do.
function insertKey(key, type) {
  const rows = [...document.querySelectorAll('#def-rows .def-row')];
  let row = rows.find((r) => r.querySelector('.def-key').value === key)
    || rows.find((r) => !r.querySelector('.def-key').value);
  if (!row) { row = defRow('', type); $('#def-rows').appendChild(row); }
  row.querySelector('.def-key').value = key;
  row.querySelector('.def-type').value = type;
  row.querySelector('.def-value').focus();
}

function definitionFromForm() {
  const def = {};
  for (const r of document.querySelectorAll('#def-rows .def-row')) {
    const key = r.querySelector('.def-key').value.trim();
    if (!key) continue;
    const raw = r.querySelector('.def-value').value;
    const type = r.querySelector('.def-type').value;
    if (type === 'number') {
      if (raw.trim() === '' || Number.isNaN(Number(raw))) throw new Error(`${key}: not a number: ${raw}`);
      def[key] = Number(raw);
    } else if (type === 'boolean') def[key] = raw === 'true';
    else if (type === 'list') def[key] = raw.split(',').map((s) => s.trim()).filter(Boolean);
    else def[key] = raw;
  }
  return def;
}

function fillPolicyForm(p) {
  $('#policy-vhost').value = p.vhost;
  $('#policy-name').value = p.name;
  $('#policy-pattern').value = p.pattern;
  $('#policy-apply-to').value = p['apply-to'];
  $('#policy-priority').value = p.priority;
  $('#def-rows').innerHTML = '';
  for (const [k, v] of Object.entries(p.definition)) {
    const type = Array.isArray(v) ? 'list' : typeof v === 'number' ? 'number' : typeof v === 'boolean' ? 'boolean' : 'string';
    $('#def-rows').appendChild(defRow(k, type, Array.isArray(v) ? v.join(', ') : v));
  }
  $('#def-rows').appendChild(defRow('', 'string'));
}

async function adminPage(main, section, vhost, name) {
  const vhosts = await api('GET', '/vhosts');
  main.innerHTML = `<h1>Admin</h1>
    <h2 id="users-section">Users</h2><div id="users"></div>
    <form id="add-user" class="box inline">
      <label>Username <input id="user-name" required></label>
      <label>Password <input id="user-password" type="password"></label>
      <label>Tags <input id="user-tags" placeholder="administrator" list="tag-list"></label>
      <datalist id="tag-list"><option>administrator</option><option>monitoring</option><option>policymaker</option><option>management</option></datalist>
      <button type="submit">Add / update user</button></form>
    <form id="set-permission" class="box inline">
      <label>User <input id="perm-user" required></label>
      <label>Virtual host ${vhostSelect('perm-vhost', vhosts, '/')}</label>
      <label>Configure <input id="perm-configure" value=".*"></label>
      <label>Write <input id="perm-write" value=".*"></label>
      <label>Read <input id="perm-read" value=".*"></label>
      <button type="submit">Set permission</button></form>
    <h2 id="vhosts-section">Virtual Hosts</h2><div id="vhosts"></div>
    <form id="add-vhost" class="box inline"><label>Name <input id="vhost-name" required></label>
      <button type="submit">Add virtual host</button></form>
    <h2 id="policies-section">Policies</h2><div id="policies"></div>
    <h2>Add / update a policy</h2>
    <form id="policy-form" class="box">
      <div class="row"><label>Virtual host ${vhostSelect('policy-vhost', vhosts, vhost || '/')}</label></div>
      <div class="row"><label>Name <input id="policy-name" required></label></div>
      <div class="row"><label>Pattern <input id="policy-pattern" placeholder="^amq\\." required></label></div>
      <div class="row"><label>Apply to <select id="policy-apply-to"><option value="all">Exchanges and queues</option>
        <option value="queues">Queues</option><option value="exchanges">Exchanges</option></select></label></div>
      <div class="row"><label>Priority <input id="policy-priority" type="number" value="0" style="width:5em"></label></div>
      <div class="row">Definition:</div><div id="def-rows"></div>
      ${Object.entries(POLICY_KEYS).map(([group, keys]) => `<div class="quick">${group}: ${keys.map(([k, t]) =>
    `<a href="#" data-key="${k}" data-type="${t}">${k}</a>`).join('')}</div>`).join('')}
      <div class="row"><button type="submit" id="policy-submit">Add / update policy</button></div></form>`;
  $('#def-rows').appendChild(defRow('', 'string'));
  for (const a of document.querySelectorAll('.quick a')) {
    a.onclick = (ev) => { ev.preventDefault(); insertKey(a.dataset.key, a.dataset.type); };
  }
  $('#add-user').onsubmit = (ev) => {
    ev.preventDefault();
    const body = { tags: $('#user-tags').value };
    if ($('#user-password').value) body.password = $('#user-password').value;
    act(() => api('PUT', `/users/${enc($('#user-name').value)}`, body), 'User saved.');
  };
  $('#set-permission').onsubmit = (ev) => {
    ev.preventDefault();
    act(() => api('PUT', `/permissions/${enc($('#perm-vhost').value)}/${enc($('#perm-user').value)}`, {
      configure: $('#perm-configure').value, write: $('#perm-write').value, read: $('#perm-read').value,
    }), 'Permission set.');
  };
  $('#add-vhost').onsubmit = (ev) => {
    ev.preventDefault();
    act(() => api('PUT', `/vhosts/${enc($('#vhost-name').value)}`), 'Virtual host added.');
  };
  $('#policy-form').onsubmit = (ev) => {
    ev.preventDefault();
    act(() => api('PUT', `/policies/${enc($('#policy-vhost').value)}/${enc($('#policy-name').value)}`, {
      pattern: $('#policy-pattern').value, 'apply-to': $('#policy-apply-to').value,
      priority: Number($('#policy-priority').value || 0), definition: definitionFromForm(),
    }), 'Policy saved.');
  };
  let scrolled = false;
  return async () => {
    const [users, perms, vhs, policies] = await Promise.all([
      api('GET', '/users').catch((e) => (e.status === 401 ? null : Promise.reject(e))),
      api('GET', '/permissions').catch(() => []), api('GET', '/vhosts'), api('GET', '/policies')]);
    $('#users').innerHTML = users === null ? '<p class="muted">Only administrators can see users.</p>'
      : table(['Name', 'Tags', 'Can access virtual hosts', ''], users.map((u) => [td(u.name), td(u.tags.join(', ')),
        td(perms.filter((p) => p.user === u.name).map((p) => p.vhost).join(', ') || 'No access'),
        tdHtml(`<button type="button" data-del-user="${esc(u.name)}">Delete</button>`)]));
    $('#vhosts').innerHTML = table(['Name', 'Ready', 'Unacked', 'Total', ''], vhs.map((v) => [td(v.name),
      tdNum(v.messages_ready), tdNum(v.messages_unacknowledged), tdNum(v.messages),
      tdHtml(`<button type="button" data-del-vhost="${esc(v.name)}">Delete</button>`)]));
    $('#policies').innerHTML = table(['Virtual host', 'Name', 'Pattern', 'Apply to', 'Definition', 'Priority', ''],
      policies.map((p, i) => [td(p.vhost), tdHtml(`<a href="#" data-edit-policy="${i}">${esc(p.name)}</a>`),
        td(p.pattern), td(p['apply-to']), td(JSON.stringify(p.definition)), tdNum(p.priority),
        tdHtml(`<button type="button" data-del-policy="${i}">Clear</button>`)]),
      'No policies.');
    for (const b of document.querySelectorAll('[data-del-user]')) {
      b.onclick = () => confirm(`Delete user ${b.dataset.delUser}?`) && act(() => api('DELETE', `/users/${enc(b.dataset.delUser)}`), 'User deleted.');
    }
    for (const b of document.querySelectorAll('[data-del-vhost]')) {
      b.onclick = () => confirm(`Delete virtual host ${b.dataset.delVhost} and everything in it?`)
        && act(() => api('DELETE', `/vhosts/${enc(b.dataset.delVhost)}`), 'Virtual host deleted.');
    }
    for (const b of document.querySelectorAll('[data-del-policy]')) {
      const p = policies[Number(b.dataset.delPolicy)];
      b.onclick = () => act(() => api('DELETE', `/policies/${enc(p.vhost)}/${enc(p.name)}`), 'Policy cleared.');
    }
    for (const a of document.querySelectorAll('[data-edit-policy]')) {
      a.onclick = (ev) => { ev.preventDefault(); fillPolicyForm(policies[Number(a.dataset.editPolicy)]); };
    }
    // A policy link from the Queues page lands here with that policy loaded in the form.
    if (!scrolled && section) {
      scrolled = true;
      const p = section === 'policies' && policies.find((x) => x.vhost === vhost && x.name === name);
      if (p) fillPolicyForm(p);
      const target = $(`#${section}-section`);
      if (target) target.scrollIntoView();
    }
  };
}

// ---- routing -------------------------------------------------------------------------

const ROUTES = [
  [/^#?\/?$/, 'overview', overviewPage],
  [/^#\/connections$/, 'connections', connectionsPage],
  [/^#\/channels$/, 'channels', channelsPage],
  [/^#\/exchanges$/, 'exchanges', exchangesPage],
  [/^#\/queues$/, 'queues', queuesPage],
  [/^#\/queues\/([^/]+)\/([^/]+)$/, 'queues', queuePage],
  [/^#\/admin(?:\/([a-z]+))?(?:\/([^/]+)\/([^/]+))?$/, 'admin', adminPage],
];

async function route() {
  if (!sessionStorage.getItem('warren-auth')) return logout();
  clearInterval(refreshTimer);
  currentRefresh = null;
  const hash = location.hash || '#/';
  const [re, tab, page] = ROUTES.find(([r]) => r.test(hash)) || ROUTES[0];
  const args = (hash.match(re) || []).slice(1)
    .map((a) => (a === undefined ? undefined : decodeURIComponent(a)));
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.tab === tab);
  const main = $('#main');
  try {
    const refresh = await page(main, ...args);
    const run = async () => {
      try {
        await refresh();
        $('#refreshed').textContent = `last ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        if (e.status !== 401) flash(e.message, true);
      }
    };
    currentRefresh = run;
    await run();
    refreshTimer = setInterval(run, REFRESH_MS);
  } catch (e) {
    main.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

$('#login-form').onsubmit = (ev) => {
  ev.preventDefault();
  login($('#login-username').value, $('#login-password').value);
};
$('#logout').onclick = () => logout();
window.addEventListener('hashchange', route);
if (sessionStorage.getItem('warren-auth')) {
  api('GET', '/whoami').then((me) => {
    $('#whoami').textContent = `User: ${me.name}`;
    $('#login').classList.add('hidden');
    $('#app').classList.remove('hidden');
    route();
  }).catch(() => logout());
} else {
  logout();
}
