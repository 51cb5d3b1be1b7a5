// The admin console's compliance section (admin.html): search every conversation, export a conversation's or a
// user's messages as a signed archive, and read the audit trail in which the server records each search and export
// (docs/protocol.md, "Compliance").
import { $, el, clear, formatTime } from './ui.js';
import { t } from './i18n.js';

/** Midnight at the start of a <input type=date> day in the browser's time zone (ms), or undefined when empty. */
function dayStart(input) {
  if (!input.value) return undefined;
  const [y, m, d] = input.value.split('-').map(Number);
  return new Date(y, m - 1, d).getTime();
}

/** The end of the range a "to" date names: the start of the next day, so the day itself is included. */
function dayEnd(input) {
  const start = dayStart(input);
  return start === undefined ? undefined : start + 24 * 3600 * 1000;
}

export function setUpCompliance(client, showError, users) {
  let lastQuery;   // the options of the search shown, for "More results" (undefined before the first search)

  const name = (id) => users.get(id)?.username || t('admin.userN', { id });
  let key = null;   // GET /v1/admin/compliance/key

  /** A username's id: from the console's user list (disabled accounts included: a leaver's messages are often what is asked for). */
  async function userId(username) {
    const wanted = username.trim().toLowerCase();
    for (const u of users.values()) if (u.username === wanted) return u.id;
    const u = await client.get(`/v1/users/by-name/${encodeURIComponent(wanted)}`);
    return u.id;
  }

  function describe(e) {
    const parts = [];
    if (e.query) parts.push(`“${e.query}”`);
    if (e.conv) parts.push(t('admin.compliance.conv', { id: e.conv }));
    if (e.user) parts.push(t(e.action === 'export' ? 'admin.compliance.messagesOf' : 'admin.compliance.senderIs', { name: name(e.user) }));
    if (e.from || e.to) parts.push(`${e.from ? formatTime(e.from) : '…'} – ${e.to ? formatTime(e.to) : '…'}`);
    if (e.before) parts.push(t('admin.compliance.nextPage'));
    return parts.join(', ');
  }

  async function loadAudit() {
    const body = $('compliance-audit');
    const list = await client.complianceAudit({ limit: 50 });
    clear(body);
    for (const e of list) {
      const tr = el('tr', { dataset: { audit: String(e.id), action: e.action } });
      tr.append(el('td', { text: formatTime(e.at) }), el('td', { className: 'admin', text: e.adminName || name(e.admin) }),
        el('td', { className: 'action', text: t(`admin.compliance.action.${e.action}`) }), el('td', { className: 'what', text: describe(e) }),
        el('td', { className: 'results', text: String(e.results) }),
        el('td', { className: 'sha', text: e.archiveSha256 ? e.archiveSha256.slice(0, 16) + '…' : '' }));
      body.append(tr);
    }
  }

  /** The key line and the results, in the language in use. */
  function relabel() {
    drawHits();
    $('compliance-export-result').textContent = '';
    if (!key) return;
    $('compliance-key-note').textContent = t('admin.compliance.key', { fingerprint: key.fingerprint });
    $('compliance-key').textContent = key.publicKey;
  }

  async function loadKey() {
    key = await client.complianceKey();
    relabel();
  }

  let hits = [];         // the results shown, every page so far
  let hasMore = false;   // whether the last page said there are more

  function drawHits() {
    const body = $('compliance-results');
    clear(body);
    for (const hit of hits) {
      const m = hit.message;
      const text = el('td', { className: 'text' });
      for (const seg of hit.highlight) text.append(seg.match ? el('mark', { text: seg.text }) : document.createTextNode(seg.text));
      const tr = el('tr', { className: 'compliance-hit', dataset: { conv: String(m.conv), seq: String(m.seq) } });
      tr.append(el('td', { text: formatTime(m.ts) }), el('td', { text: String(m.conv) }), el('td', { text: name(m.sender) }), text);
      body.append(tr);
    }
    const shown = hits.length;
    $('compliance-count').textContent = lastQuery === undefined ? '' : shown === 0 ? t('admin.compliance.none')
      : shown === 1 && !hasMore ? t('admin.compliance.one') : t(hasMore ? 'admin.compliance.countMore' : 'admin.compliance.count', { n: shown });
    $('compliance-more').hidden = !hasMore;
  }

  function showHits(page, append) {
    hits = append ? hits.concat(page.results) : page.results;
    hasMore = !!page.next;
    lastQuery = page.next ? { ...lastQuery, before: page.next } : null;
    drawHits();
  }

  async function search() {
    const opts = { limit: 20 };
    const q = $('compliance-q').value.trim();
    const conv = $('compliance-conv').value.trim();
    if (conv) opts.conv = conv;
    const sender = $('compliance-sender').value.trim();
    if (sender) opts.sender = await userId(sender);
    opts.from = dayStart($('compliance-from'));
    opts.to = dayEnd($('compliance-to'));
    lastQuery = { q, ...opts };
    showHits(await client.complianceSearch(q, opts), false);
    await loadAudit();
  }

  async function more() {
    if (!lastQuery) return;
    const { q, ...opts } = lastQuery;
    showHits(await client.complianceSearch(q, opts), true);
    await loadAudit();
  }

  async function exportArchive() {
    const scope = $('compliance-export-scope').value;
    const target = $('compliance-export-target').value.trim();
    const from = dayStart($('compliance-export-from')), to = dayEnd($('compliance-export-to'));
    const body = { from, to };
    if (scope === 'conv') {
      if (!/^\d+$/.test(target)) throw new Error(t('admin.compliance.convNeedsId'));
      body.conv = Number(target);
    } else {
      body.user = await userId(target);
    }
    $('compliance-export-result').textContent = t('admin.compliance.exporting');
    const r = await client.complianceExport(body);
    const url = URL.createObjectURL(r.blob);
    const a = el('a', { href: url, download: r.filename, id: 'compliance-download', text: r.filename });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    const box = $('compliance-export-result');
    clear(box);
    box.append(document.createTextNode(t('admin.compliance.saved', { file: r.filename, bytes: r.blob.size, sha: r.sha256, id: r.auditId })));
    await loadAudit();
  }

  const guard = (fn) => async (e) => {
    if (e) e.preventDefault();
    showError(null);
    try { await fn(); } catch (err) { $('compliance-export-result').textContent = ''; showError(err); }
  };
  $('compliance-search-form').addEventListener('submit', guard(search));
  $('compliance-more').addEventListener('click', guard(more));
  $('compliance-export-form').addEventListener('submit', guard(exportArchive));

  return { loadAudit, loadKey, relabel };
}
