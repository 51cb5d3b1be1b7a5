// The Warbler admin console (admin.html): users, groups, live figures, health, firing alerts, bots and webhooks
// (admin-integrations.js), content moderation, compliance search and export with its audit trail
// (admin-compliance.js) and the AI assistant.
import { WarblerClient } from './warbler-client.js';
import { $, el, clear, formatTime, showDialog, describeError } from './ui.js';
import { t, applyTo, wireLanguageSelect } from './i18n.js';
import { wireThemeSelect } from './theme.js';
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
    health.append(el('span', { className: ok ? 'ok' : 'bad', dataset: { component: name }, text: `${t(`admin.health.${name}`)}: ${ok ? okText : badText}` }));
  };
  badge('server', live, t('admin.health.serving'), t('admin.health.notAnswering'));
  badge('storage', ready, t('admin.health.ready'), t('admin.health.notReady'));
  badge('statistics', !!stats, t('admin.health.available'), statsError ? describeError(statsError) : t('admin.health.unavailable'));
  clear(box);
  if (stats) {
    box.append(
      figure('connections', t('admin.fig.connections'), String(stats.connections)),
      figure('messagesLastMinute', t('admin.fig.messagesLastMinute'), String(stats.messagesLastMinute)),
      figure('messages', t('admin.fig.messages'), String(stats.messages)),
      figure('users', t('admin.fig.users'), String(stats.users)),
      figure('databaseBytes', t('admin.fig.databaseBytes'), bytes(stats.databaseBytes)),
      figure('uptime', t('admin.fig.uptime', { version: stats.version }), duration(stats.uptimeSeconds)),
    );
  }
}

async function loadAlerts() {
  const box = $('alerts');
  let r;
  try { r = await client.get('/v1/admin/alerts'); } catch (e) { r = { available: false, reason: describeError(e) }; }
  clear(box);
  if (!r.available) {
    box.append(el('p', { className: 'alert sub', dataset: { available: 'false' }, text: t('admin.alerts.off', { reason: r.reason || t('admin.alerts.notConfigured') }) }));
    return;
  }
  const list = Array.isArray(r.alerts) ? r.alerts : [];
  if (!list.length) {
    box.append(el('p', { className: 'alert sub', dataset: { available: 'true' }, text: t('admin.alerts.none') }));
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
    if (since) div.append(el('div', { className: 'sub', text: t('admin.alerts.since', { time: typeof since === 'number' ? formatTime(since < 1e12 ? since * 1000 : since) : since }) }));
    box.append(div);
  }
}

/** The AI assistant's settings (never its key) and this server's use of it; the section is hidden while it is off. */
async function loadAssistant() {
  try { assistant = await client.get('/v1/admin/assistant'); } catch { assistant = null; }
  const section = $('assistant-section');
  section.hidden = !(assistant && assistant.enabled);
  if (section.hidden) return;
  $('assistant-status').textContent = t('admin.assistant.status', { user: assistant.username, model: assistant.model,
    endpoint: assistant.endpoint, key: t(assistant.keyConfigured ? 'admin.assistant.withKey' : 'admin.assistant.withoutKey') });
  const box = $('assistant-figures');
  clear(box);
  const u = assistant.usage;
  box.append(
    figure('assistantQuestions', t('admin.fig.questions'), String(u.questions)),
    figure('assistantFailures', t('admin.fig.failures'), String(u.failures)),
    figure('assistantPromptTokens', t('admin.fig.promptTokens'), String(u.promptTokens)),
    figure('assistantCompletionTokens', t('admin.fig.completionTokens'), String(u.completionTokens)),
  );
}

/** Whether the assistant answers in `conv`: on unless an admin turned it off there. */
function assistantOn(conv) {
  const c = (assistant?.conversations || []).find((x) => x.conv === conv);
  return c ? c.enabled : true;
}

/** A button of a user's row: `cls` names it for scripts and tests (promote, reset-password, …), `key` labels it. */
function action(cls, key, fn) {
  const b = el('button', { type: 'button', className: `link ${cls}`, text: t(key) });
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
      el('td', { className: 'role', dataset: { role: u.user.admin ? 'admin' : 'user' }, text: t(u.user.admin ? 'admin.role.admin' : 'admin.role.user') }),
      el('td', { className: 'status', dataset: { status: u.disabled ? 'disabled' : 'active' }, text: t(u.disabled ? 'admin.status.disabled' : 'admin.status.active') }),
      el('td', { text: formatTime(u.createdAt) }),
    );
    const actions = el('td');
    if (u.user.id !== client.user.id) {
      actions.append(action(u.disabled ? 'enable' : 'disable', u.disabled ? 'admin.enable' : 'admin.disable',
        () => client.post(`/v1/admin/users/${u.user.id}/disabled`, { value: !u.disabled })));
      actions.append(action(u.user.admin ? 'demote' : 'promote', u.user.admin ? 'admin.demote' : 'admin.promote',
        () => client.post(`/v1/admin/users/${u.user.id}/admin`, { value: !u.user.admin })));
    }
    actions.append(action('reset-password', 'admin.resetPassword', () => showDialog(t('admin.newPasswordFor', { name: u.user.username }),
      [{ name: 'password', label: t('admin.passwordLabel'), type: 'password' }],
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
    const owner = g.owner != null ? (users.get(g.owner)?.username || t('admin.userN', { id: g.owner })) : '—';
    const tr = el('tr', { dataset: { group: String(g.id) } });
    tr.append(el('td', { text: String(g.id) }), el('td', { text: g.name || '' }), el('td', { className: 'member-count', text: String(g.members) }),
      el('td', { text: owner }), el('td', { text: String(g.lastSeq) }), el('td', { text: formatTime(g.createdAt) }));
    const ai = el('td', { className: 'assistant' });
    if (assistant && assistant.enabled) {
      const on = assistantOn(g.id);
      const toggle = el('button', { type: 'button', className: 'link assistant-toggle', text: t(on ? 'admin.turnOff' : 'admin.turnOn') });
      toggle.addEventListener('click', async () => {
        showError(null);
        try {
          await client.put(`/v1/admin/assistant/conversations/${g.id}`, { enabled: !on });
          await loadAssistant();
          await loadGroups();
        } catch (e) { showError(e); }
      });
      ai.append(el('span', { className: 'assistant-state', dataset: { on: on ? '1' : '0' }, text: t(on ? 'admin.on' : 'admin.off') + ' ' }), toggle);
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
    ? t('admin.moderation.off')
    : t('admin.moderation.on', { words: s.words, action: s.action }) + (s.loadedAt ? t('admin.moderation.loaded', { time: formatTime(s.loadedAt) }) : '')
      + (s.error ? ` — ${s.error}` : ''))
    + (s.webhook ? t('admin.moderation.webhook', { url: s.webhook, seconds: s.webhookTimeoutSeconds, failure: s.webhookFailure }) : '');
  $('moderation-reload').hidden = !s.enabled;
  const body = $('moderation-blocks');
  clear(body);
  for (const b of await client.get('/v1/admin/moderation/blocks?limit=50')) {
    const tr = el('tr');
    tr.dataset.source = b.source;
    tr.append(el('td', { text: formatTime(b.at) }), el('td', { text: users.get(b.user)?.username || t('admin.userN', { id: b.user }) }),
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
    throw new Error(t('admin.notAdmin', { name: me.username }));
  }
  $('login').hidden = true;
  $('console').hidden = false;
  $('me').textContent = t('admin.signedInAs', { name: me.username });
  state.me = me;
  await loadUsers();
  await Promise.all([integrations.loadBots(), integrations.loadWebhooks(), compliance.loadKey(), compliance.loadAudit()]);
  await loadAssistant();
  await Promise.all([loadGroups(), refresh()]);
  clearInterval(timer);
  timer = setInterval(() => { refresh().catch(showError); loadGroups().catch(() => {}); }, 5000);
}

let integrations = null;
let compliance = null;
const state = { me: null };

/** Everything the console drew, drawn again in the language just chosen. */
async function redraw() {
  if (!state.me) return;
  $('me').textContent = t('admin.signedInAs', { name: state.me.username });
  compliance.relabel();
  await Promise.all([loadUsers(), integrations.loadBots(), integrations.loadWebhooks(), loadGroups(), refresh(), compliance.loadAudit()]);
}

function wire() {
  applyTo(document);
  for (const select of document.querySelectorAll('select.lang-select')) wireLanguageSelect(select, () => { redraw().catch(showError); });
  for (const select of document.querySelectorAll('select.theme-select')) wireThemeSelect(select);
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
      $('login-error').textContent = describeError(err, { login: true });
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
