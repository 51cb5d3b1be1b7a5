// The admin console's bots and outgoing webhooks (admin.html): create a bot and see its token once, rotate or
// revoke it; subscribe a URL and see its signing secret once, turn a subscription off or on, read its delivery
// log (state, attempts, last HTTP status, latency) and redeliver one. docs/bots.md has the API behind each.
import { $, el, clear, formatTime } from './ui.js';
import { t } from './i18n.js';

/** Shows a secret the server gives only once, with a note on where it goes. */
function showSecret(title, secret, note) {
  const box = $('secret-box');
  clear(box);
  const dismiss = el('button', { type: 'button', className: 'link', id: 'secret-dismiss', text: t('admin.hide') });
  dismiss.addEventListener('click', () => { box.hidden = true; clear(box); });
  box.append(el('strong', { text: title }), el('code', { className: 'secret', text: secret }), el('span', { className: 'sub', text: note }), dismiss);
  box.hidden = false;
}

export function setUpIntegrations(client, showError) {
  const button = (text, cls, fn) => {
    const b = el('button', { type: 'button', className: `link ${cls}`, text });
    b.addEventListener('click', async () => {
      showError(null);
      try { await fn(); } catch (e) { showError(e); }
    });
    return b;
  };

  async function loadBots() {
    const body = $('bots');
    clear(body);
    for (const b of await client.get('/v1/admin/bots')) {
      const tr = el('tr', { dataset: { bot: b.user.username } });
      tr.append(
        el('td', { text: String(b.user.id) }),
        el('td', { className: 'username', text: b.user.username }),
        el('td', { text: b.description || '' }),
        el('td', { className: 'token', text: b.tokenId ? `${b.tokenId}… (${b.scopes.join(', ')})` : t('admin.revoked') }),
        el('td', { text: formatTime(b.createdAt) }),
      );
      const actions = el('td');
      actions.append(button(t('admin.rotateToken'), 'rotate-token', async () => {
        const r = await client.post(`/v1/admin/bots/${b.user.id}/token`, {});
        showSecret(t('admin.newTokenFor', { name: b.user.username }), r.token, t('admin.newTokenNote'));
        await loadBots();
      }));
      if (b.tokenId) {
        actions.append(button(t('admin.revokeTokens'), 'revoke-tokens', async () => {
          await client.del(`/v1/admin/bots/${b.user.id}/token`);
          await loadBots();
        }));
      }
      tr.append(actions);
      body.append(tr);
    }
  }

  async function loadDeliveries(hook) {
    const panel = $('deliveries');
    clear(panel);
    panel.hidden = false;
    panel.dataset.webhook = String(hook.id);
    panel.append(el('h3', { text: t('admin.deliveriesTo', { url: hook.url }) }));
    const table = el('table'), head = el('tr'), thead = el('thead');
    for (const h of ['delivery', 'event', 'state', 'attempts', 'lastStatus', 'latency', 'created']) head.append(el('th', { text: t(`admin.col.${h}`) }));
    head.append(el('th'));
    thead.append(head);
    table.append(thead);
    const body = el('tbody');
    for (const d of await client.get(`/v1/webhooks/${hook.id}/deliveries?limit=50`)) {
      const tr = el('tr', { dataset: { delivery: d.id, state: d.state } });
      tr.append(
        el('td', { text: d.id }),
        el('td', { text: d.event }),
        el('td', { className: 'state', text: d.state }),
        el('td', { text: String(d.attempts) }),
        el('td', { className: 'last-status', text: d.lastStatus != null ? String(d.lastStatus) : (d.lastError || '—') }),
        el('td', { text: d.latencyMs != null ? `${d.latencyMs} ms` : '—' }),
        el('td', { text: formatTime(d.createdAt) }),
      );
      const cell = el('td');
      cell.append(button(t('admin.redeliver'), 'redeliver', async () => {
        await client.post(`/v1/webhooks/${hook.id}/deliveries/${encodeURIComponent(d.id)}/redeliver`, {});
        await loadDeliveries(hook);
      }));
      tr.append(cell);
      body.append(tr);
    }
    table.append(body);
    panel.append(table);
  }

  async function loadWebhooks() {
    const body = $('webhooks');
    clear(body);
    for (const h of await client.get('/v1/webhooks')) {
      const tr = el('tr', { dataset: { webhook: String(h.id) } });
      const state = h.enabled ? t('admin.on') : `${t('admin.off')}${h.disabledReason ? ` (${h.disabledReason})` : ''}`;
      tr.append(
        el('td', { text: String(h.id) }),
        el('td', { className: 'url', text: h.url }),
        el('td', { text: h.events.join(', ') }),
        el('td', { text: h.conversation != null ? String(h.conversation) : t('admin.all') }),
        el('td', { text: h.ownerBot != null ? t('admin.botN', { id: h.ownerBot }) : t('admin.ownerAdmin') }),
        el('td', { className: 'state', dataset: { enabled: h.enabled ? '1' : '0' }, text: state }),
      );
      const actions = el('td');
      actions.append(button(t(h.enabled ? 'admin.turnOff' : 'admin.turnOn'), 'toggle-webhook', async () => {
        await client.post(`/v1/webhooks/${h.id}/enabled`, { value: !h.enabled });
        await loadWebhooks();
      }));
      actions.append(button(t('admin.deliveries'), 'show-deliveries', () => loadDeliveries(h)));
      actions.append(button(t('admin.delete'), 'delete-webhook', async () => {
        await client.del(`/v1/webhooks/${h.id}`);
        if ($('deliveries').dataset.webhook === String(h.id)) $('deliveries').hidden = true;
        await loadWebhooks();
      }));
      tr.append(actions);
      body.append(tr);
    }
  }

  $('create-bot-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(null);
    try {
      const body = { username: $('new-bot-username').value.trim() };
      const description = $('new-bot-description').value.trim();
      if (description) body.description = description;
      const r = await client.post('/v1/admin/bots', body);
      showSecret(t('admin.tokenFor', { name: r.bot.user.username }), r.token, t('admin.tokenNote'));
      $('new-bot-username').value = ''; $('new-bot-description').value = '';
      await loadBots();
    } catch (err) { showError(err); }
  });
  $('create-webhook-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(null);
    try {
      const body = { url: $('new-webhook-url').value.trim() };
      const conv = $('new-webhook-conversation').value.trim();
      if (conv) body.conversation = Number(conv);
      const r = await client.post('/v1/webhooks', body);
      showSecret(t('admin.secretFor', { url: r.webhook.url }), r.secret, t('admin.secretNote'));
      $('new-webhook-url').value = ''; $('new-webhook-conversation').value = '';
      await loadWebhooks();
    } catch (err) { showError(err); }
  });

  return { loadBots, loadWebhooks };
}

