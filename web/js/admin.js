// The Warbler admin console (admin.html): users, groups, live figures, health, firing alerts, bots and webhooks
// (admin-integrations.js), content moderation, compliance search and export with its audit trail
// (admin-compliance.js) and the AI assistant.
import { WarblerClient } from './warbler-client.js';
import { $, el, clear, formatTime, showDialog, describeError } from './ui.js';
import { setUpIntegrations } from './admin-integrations.js';
import { setUpCompliance } from './admin-compliance.js';

const client = new WarblerClient({ device: 'admin-console' });
const users = new Map();
let timer = null;
let assistant = null;   // GET /v1/admin/assistant, when it answers

function showError(e) {
  $('console-error').textContent = e ? describeError(e) : '';
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

function figure(id, label, value) {
  const f = el('div', { className: 'figure', dataset: { figure: id } });
  f.append(el('div', { className: 'value', text: value }), el('div', { className: 'label', text: label }));
  return f;
}

async function loadFigures() {
  const box = $('figures');
  const health = $('health');
  const probe = async (path) => {
    try { const r = await fetch(path, { cache: 'no-store' }); return r.ok; } catch { return false; }
  };
  const [live, ready] = await Promise.all([probe('/healthz'), probe('/readyz')]);
  let stats = null, statsError = null;
  try { stats = await client.get('/v1/admin/stats'); } catch (e) { statsError = e; }
  clear(health);
  const badge = (name, ok, okText, badText) => {
    health.append(el('span', { className: ok ? 'ok' : 'bad', dataset: { component: name }, text: `${name}: ${ok ? okText : badText}` }));
  };
  badge('server', live, 'serving', 'not answering');
  badge('storage', ready, 'ready', 'not ready');
  badge('statistics', !!stats, 'available', statsError ? describeError(statsError) : 'unavailable');
  clear(box);
  if (stats) {
    box.append(
      figure('connections', 'Connections', String(stats.connections)),
      figure('messagesLastMinute', 'Messages / minute', String(stats.messagesLastMinute)),
      figure('messages', 'Messages stored', String(stats.messages)),
      figure('users', 'Users', String(stats.users)),
      figure('databaseBytes', 'Storage size', bytes(stats.databaseBytes)),
      figure('uptime', `Uptime · version ${stats.version}`, duration(stats.uptimeSeconds)),
    );
  }
}

async function loadAlerts() {
  const box = $('alerts');
  let r;
  try { r = await client.get('/v1/admin/alerts'); } catch (e) { r = { available: false, reason: describeError(e) }; }
  clear(box);
  if (!r.available) {
    box.append(el('p', { className: 'alert sub', dataset: { available: 'false' }, text: `Alerting is not available: ${r.reason || 'not configured'}.` }));
    return;
  }
  const list = Array.isArray(r.alerts) ? r.alerts : [];
  if (!list.length) {
    box.append(el('p', { className: 'alert sub', dataset: { available: 'true' }, text: 'No alerts are firing.' }));
    return;
  }
  for (const a of list) {
    const sev = String(a.severity || a.labels?.severity || '');
    const div = el('div', { className: `alert ${sev}`, dataset: { available: 'true' } });
    const name = a.name || a.alertname || a.rule || a.labels?.alertname || 'alert';
    div.append(el('strong', { text: name }), el('span', { className: 'sub', text: ` ${sev} ${a.state || ''}` }));
    const summary = a.summary || a.description || a.annotations?.summary || a.message;
    if (summary) div.append(el('div', { text: String(summary) }));
    const since = a.since || a.startsAt || a.activeAt;
    if (since) div.append(el('div', { className: 'sub', text: `since ${typeof since === 'number' ? formatTime(since < 1e12 ? since * 1000 : since) : since}` }));
    box.append(div);
  }
}

/** The AI assistant's settings (never its key) and this server's use of it; the section is hidden while it is off. */
async function loadAssistant() {
  try { assistant = await client.get('/v1/admin/assistant'); } catch { assistant = null; }
  const section = $('assistant-section');
  section.hidden = !(assistant && assistant.enabled);
  if (section.hidden) return;
  $('assistant-status').textContent = `@${assistant.username} asks ${assistant.model} at ${assistant.endpoint}`
    + `${assistant.keyConfigured ? ' with a key' : ' without a key'}. Use on this server since it started:`;
  const box = $('assistant-figures');
  clear(box);
  const u = assistant.usage;
  box.append(
    figure('assistantQuestions', 'Questions answered', String(u.questions)),
    figure('assistantFailures', 'Failed answers', String(u.failures)),
    figure('assistantPromptTokens', 'Prompt tokens', String(u.promptTokens)),
    figure('assistantCompletionTokens', 'Completion tokens', String(u.completionTokens)),
  );
}

/** Whether the assistant answers in `conv`: on unless an admin turned it off there. */
function assistantOn(conv) {
  const c = (assistant?.conversations || []).find((x) => x.conv === conv);
  return c ? c.enabled : true;
}

function action(text, fn) {
  const b = el('button', { type: 'button', className: `link ${text.toLowerCase().replace(/\s+/g, '-')}`, text });
  b.addEventListener('click', async () => {
    showError(null);
    try { await fn(); await loadUsers(); } catch (e) { showError(e); }
  });
  return b;
}

async function loadUsers() {
  const list = await client.get('/v1/admin/users?limit=1000');
  const body = $('users');
  clear(body);
  for (const u of list) {
    users.set(u.user.id, u.user);
    const tr = el('tr', { dataset: { user: u.user.username } });
    tr.append(
      el('td', { text: String(u.user.id) }),
      el('td', { className: 'username', text: u.user.username }),
      el('td', { text: u.user.displayName }),
      el('td', { className: 'role', text: u.user.admin ? 'admin' : 'user' }),
      el('td', { className: 'status', text: u.disabled ? 'disabled' : 'active' }),
      el('td', { text: formatTime(u.createdAt) }),
    );
    const actions = el('td');
    if (u.user.id !== client.user.id) {
      actions.append(action(u.disabled ? 'Enable' : 'Disable', () => client.post(`/v1/admin/users/${u.user.id}/disabled`, { value: !u.disabled })));
      actions.append(action(u.user.admin ? 'Demote' : 'Promote', () => client.post(`/v1/admin/users/${u.user.id}/admin`, { value: !u.user.admin })));
    }
    actions.append(action('Reset password', () => showDialog(`New password for ${u.user.username}`,
      [{ name: 'password', label: 'Password (8+ characters)', type: 'password' }],
      (v) => client.post(`/v1/admin/users/${u.user.id}/password`, { password: v.password }))));
    tr.append(actions);
    body.append(tr);
  }
}

async function loadGroups() {
  const list = await client.get('/v1/admin/groups?limit=1000');
  const body = $('groups');
  clear(body);
  for (const g of list) {
    const owner = g.owner != null ? (users.get(g.owner)?.username || `user ${g.owner}`) : '—';
    const tr = el('tr', { dataset: { group: String(g.id) } });
    tr.append(el('td', { text: String(g.id) }), el('td', { text: g.name || '' }), el('td', { className: 'member-count', text: String(g.members) }),
      el('td', { text: owner }), el('td', { text: String(g.lastSeq) }), el('td', { text: formatTime(g.createdAt) }));
    const ai = el('td', { className: 'assistant' });
    if (assistant && assistant.enabled) {
      const on = assistantOn(g.id);
      const toggle = el('button', { type: 'button', className: 'link assistant-toggle', text: on ? 'Turn off' : 'Turn on' });
      toggle.addEventListener('click', async () => {
        showError(null);
        try {
          await client.put(`/v1/admin/assistant/conversations/${g.id}`, { enabled: !on });
          await loadAssistant();
          await loadGroups();
        } catch (e) { showError(e); }
      });
      ai.append(el('span', { className: 'assistant-state', text: on ? 'on ' : 'off ' }), toggle);
    } else {
      ai.textContent = '—';
    }
    tr.append(ai);
    body.append(tr);
  }
}

/** The word list in force and the latest sends it refused. */
async function loadModeration() {
  const s = await client.get('/v1/admin/moderation');
  $('moderation-status').textContent = (!s.enabled
    ? 'word list off: set moderation.words_file in the server configuration to turn it on'
    : `${s.words} words, action ${s.action}` + (s.loadedAt ? `, loaded ${formatTime(s.loadedAt)}` : '') + (s.error ? ` — ${s.error}` : ''))
    + (s.webhook ? `; moderation webhook ${s.webhook} (budget ${s.webhookTimeoutSeconds} s, fails ${s.webhookFailure})` : '');
  $('moderation-reload').hidden = !s.enabled;
  const body = $('moderation-blocks');
  clear(body);
  for (const b of await client.get('/v1/admin/moderation/blocks?limit=50')) {
    const tr = el('tr');
    tr.dataset.source = b.source;
    tr.append(el('td', { text: formatTime(b.at) }), el('td', { text: users.get(b.user)?.username || `user ${b.user}` }),
      el('td', { text: String(b.conv) }), el('td', { text: b.word }), el('td', { className: 'source', text: b.source }));
    body.append(tr);
  }
}

async function refresh() {
  await Promise.all([loadFigures(), loadAlerts(), loadModeration(), loadAssistant()]);
}

async function enter() {
  const me = await client.get('/v1/me');
  if (!me.admin) {
    await client.logout();
    throw new Error(`${me.username} is not an administrator; ask an admin to promote you`);
  }
  $('login').hidden = true;
  $('console').hidden = false;
  $('me').textContent = `signed in as ${me.username}`;
  await loadUsers();
  await Promise.all([integrations.loadBots(), integrations.loadWebhooks(), compliance.loadKey(), compliance.loadAudit()]);
  await loadAssistant();
  await Promise.all([loadGroups(), refresh()]);
  clearInterval(timer);
  timer = setInterval(() => { refresh().catch(showError); loadGroups().catch(() => {}); }, 5000);
}

let integrations = null;
let compliance = null;

function wire() {
  integrations = setUpIntegrations(client, showError);
  compliance = setUpCompliance(client, showError, users);
  $('moderation-reload').addEventListener('click', async () => {
    try { await client.post('/v1/admin/moderation/reload'); showError(null); await loadModeration(); } catch (e) { showError(e); }
  });
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('login-error').textContent = '';
    try {
      await client.login($('login-username').value, $('login-password').value);
      $('login-password').value = '';
      await enter();
    } catch (err) {
      $('login-error').textContent = describeError(err);
    }
  });
  $('logout').addEventListener('click', async () => { clearInterval(timer); await client.logout(); location.reload(); });
  $('create-user-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(null);
    try {
      const body = { username: $('new-username').value.trim(), password: $('new-password').value, admin: $('new-admin').checked };
      const display = $('new-display-name').value.trim();
      if (display) body.displayName = display;
      await client.post('/v1/admin/users', body);
      for (const id of ['new-username', 'new-password', 'new-display-name']) $(id).value = '';
      $('new-admin').checked = false;
      await loadUsers();
    } catch (err) { showError(err); }
  });
}

async function start() {
  wire();
  if (client.session) {
    try { await enter(); return; } catch (e) { $('login-error').textContent = describeError(e); }
  }
  $('login').hidden = false;
}

start();
