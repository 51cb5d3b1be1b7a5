// The Warbler web chat (index.html). All user text goes into the page with textContent, never as HTML.
import { WarblerClient, applyReaction, mentionsUser } from './warbler-client.js';
import { $, el, clear, formatTime, showDialog, describeError } from './ui.js';
import { t, applyTo, wireLanguageSelect } from './i18n.js';
import { wireThemeSelect } from './theme.js';

const client = new WarblerClient({ device: 'web' });

const state = {
  convs: new Map(),        // id -> summary {id, type, name, lastSeq, readSeq, unread, lastMessage, peer}
  details: new Map(),      // id -> {members: Map(user -> {role, readSeq, deliveredSeq})}
  messages: new Map(),     // id -> Map(seq -> message)
  hasMore: new Map(),      // id -> bool (older history on the server)
  users: new Map(),        // id -> profile
  userLoads: new Map(),    // id -> Promise
  presence: new Map(),     // user -> 'online'|'offline'
  typing: new Map(),       // conv -> Map(user -> timer)
  contacts: [],
  current: null,
  editing: null,           // {conv, seq, before}: the message being edited, and what the composer held before
  replying: null,          // {conv, seq}: the message the next send quotes
  composeMentions: new Map(), // user id -> the "@name" inserted for them (kept only while it is still in the text)
  mentionQuery: null,      // {start, text}: the "@…" being typed, for the autocomplete
  reactingTo: null,        // seq whose emoji picker is open
  forwarding: null,        // {conv, seqs: Set}: messages picked to forward
  inviteShown: null,       // the invite link just made, shown in the member list
  draftTimer: null,        // the pending save of the composer's draft
  draftSaved: new Map(),   // conv -> the draft text the server has
  draftAt: new Map(),      // conv -> the newest draft's updatedAt seen (a late push of an older save is ignored)
  pins: new Map(),         // group id -> [{message, pinnedBy, pinnedAt}]
  search: null,            // {q, conv, sender, from, to, results: [], next}: the search shown instead of the conversation list
  readSent: new Map(),     // conv -> seq
  deliveredSent: new Map(),
  blobURLs: new Map(),     // attachment id -> blob: URL
  typingSentAt: 0,
  typingTimer: null,
  reloadingConvs: null,    // a running conversation-list reload
};

// ---- Users -------------------------------------------------------------------------------------

function userName(id) {
  const u = state.users.get(id);
  if (u) return u.displayName || u.username;
  loadUser(id);
  return t('user', { id });
}

function loadUser(id) {
  if (state.users.has(id) || state.userLoads.has(id)) return state.userLoads.get(id);
  const p = client.get(`/v1/users/${id}`).then((u) => { state.users.set(id, u); scheduleRender(); return u; })
    .catch(() => null).finally(() => state.userLoads.delete(id));
  state.userLoads.set(id, p);
  return p;
}

async function userByName(name) {
  const u = await client.get(`/v1/users/by-name/${encodeURIComponent(name.trim().toLowerCase())}`);
  state.users.set(u.id, u);
  return u;
}

// ---- Rendering ---------------------------------------------------------------------------------

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

function render() {
  renderConnection();
  renderConversationList();
  renderChat();
  renderContacts();
}

function renderConnection() {
  const c = $('conn-state');
  const queued = client.pending().length;
  const label = ['online', 'connecting', 'offline'].includes(client.state) ? t(`conn.${client.state}`) : client.state;
  c.textContent = queued ? t('conn.queued', { state: label, n: queued }) : label;
  c.dataset.state = client.state;
  c.dataset.queued = String(queued);
}

function convTitle(c) {
  if (c.type === 'group') return c.name || t('group.untitled', { id: c.id });
  return c.peer ? userName(c.peer) : t('direct');
}

function preview(m) {
  if (!m) return '';
  if (m.recalled) return t('recalled');
  switch (m.kind) {
    case 'text': return m.text || '';
    case 'attachment': return t('preview.attachment', { name: m.attachment ? m.attachment.name : t('preview.file') });
    case 'custom': return t('preview.custom');
    case 'system': return systemText(m);
    default: return '';
  }
}

function sortedConvs() {
  // Pinned first (latest pin first), then the most recently active: the server's order.
  return [...state.convs.values()].sort((a, b) => ((b.pinnedAt || -1) - (a.pinnedAt || -1))
    || ((b.lastMessage?.ts || 0) - (a.lastMessage?.ts || 0)) || (b.id - a.id));
}

async function togglePin(c) {
  try {
    if (c.pinnedAt) await client.del(`/v1/conversations/${c.id}/pin`); else await client.put(`/v1/conversations/${c.id}/pin`);
    await loadConversations();
  } catch (e) { showChatError(e); }
}

/** Whether the user muted `c`'s notifications (an end that has passed no longer counts). */
function isMuted(c) {
  return !!c.muted && (!c.mutedUntil || c.mutedUntil > Date.now());
}

async function toggleMute(c) {
  try {
    await client.muteConversation(c.id, { muted: !isMuted(c) });
    await loadConversations();
  } catch (e) { showChatError(e); }
}

/** The page title counts unread messages; a muted conversation adds only its unread mentions. */
function renderTitle() {
  let n = 0;
  for (const c of state.convs.values()) n += isMuted(c) ? (c.unreadMentions || 0) : (c.unread || 0);
  document.title = n > 0 ? `(${n}) Warbler` : 'Warbler';
}

// ---- Browser notifications --------------------------------------------------------------------

/** Whether this browser can show notifications and the user has not answered yet (the button asks, on a click). */
function canAskForNotifications() {
  return typeof Notification !== 'undefined' && Notification.permission === 'default';
}

function renderNotifyButton() {
  $('notify-toggle').hidden = !canAskForNotifications();
}

async function askForNotifications() {
  if (!canAskForNotifications()) return;
  try { await Notification.requestPermission(); } catch { /* an old browser's callback form: nothing to do */ }
  renderNotifyButton();
}

/**
 * A new message from someone else while this tab is hidden: a notification (one per conversation, replaced by the
 * next), unless the conversation is muted and the message does not mention me. Clicking it opens the conversation.
 */
function notifyIfHidden(c, m) {
  if (document.visibilityState !== 'hidden' || typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
  const mentioned = mentionsUser(m, client.user.id);
  if (isMuted(c) && !mentioned) return;
  const title = mentioned ? t('notify.mention', { who: userName(m.sender), conv: convTitle(c) }) : convTitle(c);
  const body = (c.type === 'group' && !mentioned ? `${userName(m.sender)}: ` : '') + preview(m);
  try {
    const n = new Notification(title, { body, tag: `warbler-conv-${c.id}`, icon: '/favicon.svg', lang: document.documentElement.lang });
    n.onclick = () => { window.focus(); openConversation(c.id); n.close(); };
  } catch { /* e.g. a page where only a service worker may notify: the title still counts */ }
}

function renderConversationList() {
  const list = $('conv-list');
  clear(list);
  renderTitle();
  for (const c of sortedConvs()) {
    const muted = isMuted(c);
    const li = el('li', { className: 'conv' + (c.id === state.current ? ' active' : '') + (muted ? ' muted' : ''), dataset: { conv: String(c.id) } });
    const top = el('div', { className: 'conv-top' });
    if (c.type === 'direct' && c.peer) top.append(presenceDot(c.peer));
    top.append(el('span', { className: 'conv-name', text: convTitle(c) }));
    const pin = el('button', { type: 'button', className: 'link pin' + (c.pinnedAt ? ' pinned' : ''), title: c.pinnedAt ? t('pin.unpin') : t('pin.conv'),
      text: c.pinnedAt ? '📌' : '📍', dataset: { pinned: c.pinnedAt ? '1' : '0' } });
    pin.addEventListener('click', (e) => { e.stopPropagation(); togglePin(c); });
    const mute = el('button', { type: 'button', className: 'link mute' + (muted ? ' on' : ''), title: muted ? t('mute.off') : t('mute.on'),
      text: muted ? '🔕' : '🔔', dataset: { muted: muted ? '1' : '0' } });
    mute.addEventListener('click', (e) => { e.stopPropagation(); toggleMute(c); });
    top.append(pin, mute);
    if (c.lastMessage) top.append(el('time', { className: 'conv-time', text: formatTime(c.lastMessage.ts) }));
    const bottom = el('div', { className: 'conv-bottom' });
    // A draft (from any of my devices) shows instead of the last message, except in the open conversation.
    if (c.draft && c.draft.text && c.id !== state.current) {
      bottom.append(el('span', { className: 'conv-last conv-draft', text: t('preview.draft', { text: c.draft.text }) }));
    } else {
      bottom.append(el('span', { className: 'conv-last', text: preview(c.lastMessage) }));
    }
    if (c.unreadMentions > 0) bottom.append(el('span', { className: 'badge mention', title: t('mentions.unread'), text: `@${c.unreadMentions}` }));
    if (c.unread > 0) bottom.append(el('span', { className: 'badge unread' + (muted ? ' quiet' : ''), text: String(c.unread) }));
    li.append(top, bottom);
    li.addEventListener('click', () => openConversation(c.id));
    list.append(li);
  }
}

function presenceDot(user) {
  const s = state.presence.get(user) || 'offline';
  return el('span', { className: `dot ${s}`, title: t(`presence.${s}`), dataset: { presence: s, user: String(user) } });
}

function systemText(m) {
  const d = m.data || {};
  const by = d.by ? userName(d.by) : t('sys.someone');
  const names = (d.users || []).map(userName).join(', ');
  switch (d.event) {
    case 'members_added': return t('sys.members_added', { by, names });
    case 'member_removed': return t('sys.member_removed', { by, names: names || userName(d.user) });
    case 'member_left': return t('sys.member_left', { who: d.user ? userName(d.user) : by });
    case 'created': case 'role_changed': case 'owner_changed': case 'renamed': case 'dissolved':
    case 'message_pinned': case 'message_unpinned': case 'group_unmuted': case 'announcement_set': case 'announcement_cleared':
      return t(`sys.${d.event}`, { by });
    case 'member_joined': return t('sys.member_joined', { who: userName(d.user) });
    case 'join_requested': return t('sys.join_requested', { who: userName(d.user) });
    case 'member_muted': case 'member_unmuted':
      return t(d.until ? 'sys.member_muted_until' : `sys.${d.event}`, { by, who: userName(d.user), until: d.until ? formatTime(d.until) : '' });
    case 'group_muted':
      return t(d.until ? 'sys.group_muted_until' : 'sys.group_muted', { by, until: d.until ? formatTime(d.until) : '' });
    default: return d.event || t('sys.update');
  }
}

function otherMembers(conv) {
  const d = state.details.get(conv);
  if (!d) return [];
  return [...d.members.entries()].filter(([u]) => u !== client.user.id).map(([, m]) => m);
}

function statusOf(conv, m) {
  const others = otherMembers(conv);
  if (others.length) {
    if (others.every((o) => o.readSeq >= m.seq)) return 'read';
    if (others.every((o) => Math.max(o.deliveredSeq, o.readSeq) >= m.seq)) return 'delivered';
  }
  return 'sent';
}


function renderMessage(conv, m, pending) {
  const mine = pending || m.sender === client.user.id;
  if (m.kind === 'system') {
    return el('li', { className: 'msg system', dataset: { seq: String(m.seq) }, text: systemText(m) });
  }
  const mentioned = !pending && mentionsUser(m, client.user.id);
  const li = el('li', { className: `msg ${mine ? 'mine' : 'theirs'}` + (m.recalled ? ' recalled' : '') + (mentioned ? ' mentioned' : '') });
  if (pending) li.dataset.cid = m.cid; else { li.dataset.seq = String(m.seq); li.dataset.cid = m.cid; }
  const c = state.convs.get(conv);
  if (!mine && c && c.type === 'group') li.append(el('div', { className: 'sender', text: userName(m.sender) }));
  if (m.replyTo) li.append(renderQuote(conv, m.replyTo));
  const body = el('div', { className: 'body' });
  if (m.recalled) {
    body.textContent = t('recalled');
  } else if (m.kind === 'attachment' && m.attachment) {
    body.append(renderAttachment(m.attachment));
    if (m.text) body.append(el('div', { className: 'caption', text: m.text }));
  } else if (m.kind === 'custom') {
    body.textContent = JSON.stringify(m.data);
  } else {
    body.textContent = m.text || '';
  }
  if (m.forwardedFrom && !m.recalled) {
    li.append(el('div', { className: 'forwarded', text: t('forwarded.from', { who: userName(m.forwardedFrom.sender), when: formatTime(m.forwardedFrom.ts) }) }));
  }
  li.append(body);
  const meta = el('div', { className: 'meta' });
  meta.append(el('time', { text: m.ts ? formatTime(m.ts) : '' }));
  const assistantState = m.data && typeof m.data === 'object' ? m.data.assistant : undefined;
  if (assistantState === 'streaming' && !m.recalled) {
    li.classList.add('streaming');
    meta.append(el('span', { className: 'streaming-mark', text: t('assistant.writing') }));
  } else if (m.editedAt && !m.recalled && !assistantState) {
    meta.append(el('span', { className: 'edited', text: t('edited') }));
  }
  if (mine) {
    const s = pending ? (client.state === 'online' ? 'sending' : 'queued') : statusOf(conv, m);
    meta.append(el('span', { className: 'status', dataset: { status: s }, text: t(`status.${s}`) }));
  }
  li.append(meta);
  if (!pending && !m.recalled && m.reactions && m.reactions.length) li.append(renderReactions(conv, m));
  if (!pending && !m.recalled) {
    const actions = el('div', { className: 'actions' });
    const reply = el('button', { type: 'button', className: 'link reply', text: t('act.reply') });
    reply.addEventListener('click', () => startReply(conv, m));
    const react = el('button', { type: 'button', className: 'link react', text: t('act.react') });
    react.addEventListener('click', () => { state.reactingTo = state.reactingTo === m.seq ? null : m.seq; scheduleRender(); });
    actions.append(reply, react);
    if (!pending && canEdit(m)) {
      const edit = el('button', { type: 'button', className: 'link edit', text: t('act.edit') });
      edit.addEventListener('click', () => startEdit(conv, m));
      actions.append(edit);
    }
    if (c && c.type === 'group' && canModerate(conv)) {
      const pinned = (state.pins.get(conv) || []).some((p) => p.message.seq === m.seq);
      const pin = el('button', { type: 'button', className: 'link pin-message', text: pinned ? t('act.unpin') : t('act.pin') });
      pin.addEventListener('click', async () => {
        try {
          if (pinned) await client.del(`/v1/conversations/${conv}/pins/${m.seq}`); else await client.put(`/v1/conversations/${conv}/pins/${m.seq}`);
          await loadPins(conv);
        } catch (e) { showChatError(e); }
      });
      actions.append(pin);
    }
    const picked = state.forwarding?.conv === conv && state.forwarding.seqs.has(m.seq);
    if (picked) li.classList.add('picked');
    const forward = el('button', { type: 'button', className: 'link forward', text: picked ? t('act.unpick') : t('act.forward') });
    forward.addEventListener('click', () => togglePick(conv, m.seq));
    actions.append(forward);
    if (mine) {
      const recall = el('button', { type: 'button', className: 'link recall', text: t('act.recall') });
      recall.addEventListener('click', () => { client.recall(conv, m.seq); scheduleRender(); });
      actions.append(recall);
    }
    li.append(actions);
    if (state.reactingTo === m.seq) li.append(renderEmojiPicker(conv, m));
  }
  return li;
}

const quickEmoji = ['👍', '❤️', '😂', '🎉', '😮', '🙏'];

function canModerate(conv) {
  const role = state.details.get(conv)?.members.get(client.user.id)?.role;
  return role === 'owner' || role === 'admin';
}

async function loadPins(conv) {
  if (state.convs.get(conv)?.type !== 'group') { state.pins.delete(conv); scheduleRender(); return; }
  state.pins.set(conv, await client.get(`/v1/conversations/${conv}/pins`));
  scheduleRender();
}

/** The group's pinned messages above the conversation; a click shows the message. */
function renderPinned(conv) {
  const bar = $('pinned-bar');
  clear(bar);
  const pins = state.pins.get(conv) || [];
  bar.hidden = !pins.length;
  for (const p of pins) {
    const b = el('button', { type: 'button', className: 'link pinned-message', dataset: { seq: String(p.message.seq) },
      text: `📌 ${userName(p.message.sender)}: ${preview(p.message)}` });
    b.addEventListener('click', () => jumpTo(conv, p.message.seq).catch(showChatError));
    bar.append(b);
  }
}

function myReaction(m, emoji) {
  return (m.reactions || []).some((r) => r.emoji === emoji && r.users.includes(client.user.id));
}

function toggleReaction(conv, m, emoji) {
  client.react(conv, m.seq, emoji, myReaction(m, emoji));
  state.reactingTo = null;
  scheduleRender();
}

function renderReactions(conv, m) {
  const row = el('div', { className: 'reactions' });
  for (const r of m.reactions) {
    const chip = el('button', {
      type: 'button', className: 'reaction' + (r.users.includes(client.user.id) ? ' mine' : ''),
      title: r.users.map(userName).join(', '), text: `${r.emoji} ${r.users.length}`, dataset: { emoji: r.emoji },
    });
    chip.addEventListener('click', () => toggleReaction(conv, m, r.emoji));
    row.append(chip);
  }
  return row;
}

function renderEmojiPicker(conv, m) {
  const picker = el('div', { className: 'emoji-picker' });
  for (const e of quickEmoji) {
    const b = el('button', { type: 'button', className: 'link emoji', text: e, dataset: { emoji: e } });
    b.addEventListener('click', () => toggleReaction(conv, m, e));
    picker.append(b);
  }
  return picker;
}

/** The quoted original of a reply: its sender and text (or "recalled"); a click shows it, loading history back to it. */
function renderQuote(conv, seq) {
  const original = state.messages.get(conv)?.get(seq);
  const quote = el('button', { type: 'button', className: 'quote', dataset: { replyTo: String(seq) } });
  if (!original) quote.textContent = t('quote.earlier');
  else if (original.recalled) quote.textContent = t('recalled');
  else quote.textContent = `${userName(original.sender)}: ${preview(original)}`;
  quote.addEventListener('click', () => jumpTo(conv, seq).catch(showChatError));
  return quote;
}

/** Scrolls to message `seq`, paging older history in until it is loaded (at most 40 pages). */
async function jumpTo(conv, seq) {
  for (let i = 0; i < 40 && !state.messages.get(conv)?.has(seq) && state.hasMore.get(conv) !== false; i++) await loadHistory(conv, true);
  render();
  const node = $('messages').querySelector(`li[data-seq="${seq}"]`);
  if (!node) { showChatError(new Error(t('jump.gone'))); return; }
  $('messages').dataset.stick = '0';
  node.scrollIntoView({ block: 'center' });
  node.classList.add('flash');
  setTimeout(() => node.classList.remove('flash'), 1500);
}

function renderAttachment(a) {
  if (a.contentType && a.contentType.startsWith('image/')) {
    const img = el('img', { className: 'attachment-image', alt: a.name });
    const cached = state.blobURLs.get(a.id);
    if (cached) img.src = cached;
    else loadBlob(a.id).then((url) => { if (url) { img.src = url; scheduleRender(); } });
    return img;
  }
  const button = el('button', { type: 'button', className: 'link file', text: t('download', { name: a.name, kib: Math.ceil(a.size / 1024) }) });
  button.addEventListener('click', async () => {
    const url = await loadBlob(a.id);
    if (!url) return;
    const link = el('a', { href: url, download: a.name });
    document.body.append(link);
    link.click();
    link.remove();
  });
  return button;
}

const blobLoads = new Map();
function loadBlob(id) {
  if (state.blobURLs.has(id)) return Promise.resolve(state.blobURLs.get(id));
  if (!blobLoads.has(id)) {
    // Fetched with the Authorization header and shown from a blob: URL, so no token ever appears in a URL.
    blobLoads.set(id, client.fetchAttachment(id).then((blob) => {
      const url = URL.createObjectURL(blob);
      state.blobURLs.set(id, url);
      return url;
    }).catch(() => null).finally(() => blobLoads.delete(id)));
  }
  return blobLoads.get(id);
}

function renderChat() {
  const conv = state.current;
  const list = $('messages');
  const c = conv != null ? state.convs.get(conv) : null;
  $('empty-chat').hidden = !!c;
  list.hidden = !c;
  $('composer').hidden = !c;
  $('members-btn').hidden = !c;
  if (!c) {
    $('chat-title').textContent = 'Warbler'; $('chat-sub').textContent = ''; $('pinned-bar').hidden = true; $('announcement-bar').hidden = true;
    return;
  }
  renderPinned(conv);
  renderAnnouncement(conv);
  $('chat-title').textContent = convTitle(c);
  if (c.type === 'direct' && c.peer) {
    // While we are offline ourselves, the peer's presence is unknown.
    const s = client.state === 'online' ? (state.presence.get(c.peer) || 'offline') : 'unknown';
    $('chat-sub').textContent = s === 'unknown' ? '' : t(`presence.${s}`);
    $('chat-sub').dataset.presence = s;
  } else {
    const d = state.details.get(conv);
    $('chat-sub').textContent = d ? t('members.count', { n: d.members.size }) : '';
    delete $('chat-sub').dataset.presence;
  }
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const oldHeight = list.scrollHeight, oldTop = list.scrollTop;
  clear(list);
  if (state.hasMore.get(conv)) list.append(el('li', { className: 'more', text: t('more.history') }));
  const msgs = [...(state.messages.get(conv) || new Map()).values()]
    .filter((m) => m.kind !== 'recall' && m.kind !== 'edit' && m.kind !== 'reaction').sort((a, b) => a.seq - b.seq);
  for (const m of msgs) list.append(renderMessage(conv, m, false));
  for (const p of client.pending(conv)) {
    if (p.frame.type === 'send') list.append(renderMessage(conv, { ...p.frame, ts: p.queuedAt }, true));
  }
  if (list.dataset.prepended === '1') {
    list.scrollTop = list.scrollHeight - oldHeight + oldTop;
    delete list.dataset.prepended;
  } else if (nearBottom || list.dataset.stick !== '0') {
    list.scrollTop = list.scrollHeight;
  }
  renderTyping();
  renderForwardBar(conv);
  renderSendMute(conv);
  markRead(conv, msgs);
}

/** The group's announcement at the top of the conversation, with who set it and when. */
function renderAnnouncement(conv) {
  const a = state.details.get(conv)?.announcement;
  $('announcement-bar').hidden = !a;
  if (!a) return;
  $('announcement-text').textContent = a.text;
  $('announcement-meta').textContent = t('announcement.meta', { who: userName(a.by), when: formatTime(a.at) });
}

/** The page address that opens invite `code` (the code travels in the fragment, never to the server's logs). */
function inviteURL(code) { return `${location.origin}${location.pathname}#invite=${encodeURIComponent(code)}`; }

/** Owner and admins: make an invite link (hours it lasts, uses, whether joining needs approval) and show it. */
function makeInvite() {
  const conv = state.current;
  showDialog(t('invite.make'), [
    { name: 'hours', label: t('invite.hours'), type: 'number', value: '24', required: false },
    { name: 'uses', label: t('invite.uses'), type: 'number', value: '', required: false },
    { name: 'approval', label: t('invite.approval'), options: [{ value: 'no', label: t('invite.approval.no') }, { value: 'yes', label: t('invite.approval.yes') }] },
  ], async (v) => {
    const hours = Number(v.hours), uses = Number(v.uses);
    const invite = await client.createInvite(conv, {
      expiresInSeconds: hours > 0 ? Math.round(hours * 3600) : undefined, maxUses: uses > 0 ? uses : undefined, approval: v.approval === 'yes',
    });
    state.inviteShown = inviteURL(invite.code);
    renderMembers();
  });
}

/** Opens an invite link from the page address (`#invite=CODE`): shows the group and joins, or asks to. */
async function openInviteFromURL() {
  const m = /^#invite=(.+)$/.exec(location.hash);
  if (!m || !client.user) return;
  const code = decodeURIComponent(m[1]);
  history.replaceState(null, '', location.pathname);
  try {
    const p = await client.get(`/v1/invites/${encodeURIComponent(code)}`);
    const title = t(p.approval ? 'invite.ask' : 'invite.join', { name: p.name || t('group.untitled', { id: p.conversation }), n: p.members });
    await showDialog(title, [], async () => {
      const r = await client.joinInvite(code);
      if (r.outcome === 'joined') { await loadConversations(); await openConversation(r.conversation); }
      else showChatError(new Error(t('invite.requested')));
    });
  } catch (e) { showChatError(e); }
}

/** Owner and admins: the group's pending join requests, each to accept or decline. */
async function renderJoinRequests(conv, canManage) {
  const list = $('join-requests');
  clear(list);
  list.hidden = true;
  if (!canManage) return;
  const requests = await client.get(`/v1/conversations/${conv}/join-requests`);
  list.hidden = !requests.length;
  for (const r of requests) {
    const li = el('li', { className: 'join-request', dataset: { user: String(r.user) } });
    li.append(el('span', { text: t('invite.requestFrom', { who: userName(r.user) }) }));
    for (const accept of [true, false]) {
      const b = el('button', { type: 'button', className: `link ${accept ? 'accept' : 'decline'}`, text: t(accept ? 'contact.accept' : 'contact.decline') });
      b.addEventListener('click', async () => {
        try { await client.resolveJoinRequest(conv, r.user, accept); await loadDetails(conv); renderMembers(); } catch (e) { showChatError(e); }
      });
      li.append(b);
    }
    list.append(li);
  }
}

/** Owner and admins: edit the announcement (an empty text clears it). */
function editAnnouncement() {
  const conv = state.current;
  const current = state.details.get(conv)?.announcement?.text || '';
  showDialog(t('announcement.edit'), [{ name: 'text', label: t('announcement.text'), value: current, required: false }], async (v) => {
    const text = v.text.trim();
    if (text) await client.put(`/v1/conversations/${conv}/announcement`, { text });
    else if (current) await client.del(`/v1/conversations/${conv}/announcement`);
    await loadDetails(conv);
  });
}

/** Adds message `seq` to (or takes it from) the messages to forward; picking in another conversation starts over. */
function togglePick(conv, seq) {
  if (state.forwarding?.conv !== conv) state.forwarding = { conv, seqs: new Set() };
  const seqs = state.forwarding.seqs;
  if (seqs.has(seq)) seqs.delete(seq); else seqs.add(seq);
  if (!seqs.size) state.forwarding = null;
  scheduleRender();
}

function renderForwardBar(conv) {
  const f = state.forwarding?.conv === conv ? state.forwarding : null;
  $('forward-bar').hidden = !f;
  if (f) $('forward-count').textContent = t('forward.count', { n: f.seqs.size });
}

/** Asks for the conversation to forward the picked messages to, then forwards them in their order. */
function forwardPicked() {
  const f = state.forwarding;
  if (!f) return;
  const options = sortedConvs().map((c) => ({ value: String(c.id), label: convTitle(c) }));
  showDialog(t('forward.title', { n: f.seqs.size }), [{ name: 'to', label: t('forward.to'), options }], async (v) => {
    await client.forward(Number(v.to), f.conv, [...f.seqs].sort((a, b) => a - b));
    state.forwarding = null;
    await openConversation(Number(v.to));
  });
}

/** The lengths a mute can be given (ms; 0: until turned off), named `mute.KEY` in the catalogues. */
const MUTE_FOR = [['1h', 3600_000], ['8h', 8 * 3600_000], ['1d', 86400_000], ['1w', 7 * 86400_000], ['forever', 0]];

/** A <select> of MUTE_FOR with `chosen` (ms) selected. */
function muteForSelect(className, chosen) {
  const select = el('select', { className });
  select.setAttribute('aria-label', t('mute.for'));
  for (const [key, ms] of MUTE_FOR) select.append(el('option', { value: String(ms), text: t(`mute.${key}`) }));
  select.value = String(chosen);
  return select;
}

/** The `until` (ms) a mute chosen in `select` runs to, or undefined for until turned off. */
function muteUntil(select) {
  const ms = Number(select?.value || 0);
  return ms ? Date.now() + ms : undefined;
}

/** Why I may not send here now (an admin muted me, or the whole group), or null. */
function sendMuteReason(conv) {
  const d = state.details.get(conv);
  const me = d?.members.get(client.user.id);
  if (!d || !me) return null;
  const now = Date.now();
  if (me.muted && (!me.mutedUntil || me.mutedUntil > now)) return me.mutedUntil ? t('muted.youUntil', { until: formatTime(me.mutedUntil) }) : t('muted.you');
  if (d.allMuted && (!d.allMutedUntil || d.allMutedUntil > now) && me.role === 'member') {
    return d.allMutedUntil ? t('muted.groupUntil', { until: formatTime(d.allMutedUntil) }) : t('muted.group');
  }
  return null;
}

function renderSendMute(conv) {
  const why = sendMuteReason(conv);
  $('muted-banner').hidden = !why;
  $('muted-banner').textContent = why || '';
  $('composer-input').disabled = !!why;
  $('send-btn').disabled = !!why;
}

function renderTyping() {
  const typing = state.typing.get(state.current);
  const who = typing ? [...typing.keys()].map(userName) : [];
  $('typing-line').textContent = who.length ? t(who.length > 1 ? 'typing.many' : 'typing.one', { who: who.join(', ') }) : '';
}

function markRead(conv, msgs) {
  if (document.visibilityState !== 'visible') return;
  const c = state.convs.get(conv);
  const last = msgs.length ? msgs[msgs.length - 1].seq : 0;
  const top = Math.max(last, c ? c.lastSeq : 0);
  if (top > (state.readSent.get(conv) || 0) && client.receipt(conv, 'read', top)) {
    state.readSent.set(conv, top);
    if (c) { c.unread = 0; c.unreadMentions = 0; c.readSeq = top; }
  }
}

// ---- Conversations -----------------------------------------------------------------------------

async function loadConversations() {
  const list = await client.get('/v1/conversations');
  for (const c of list) {
    const old = state.convs.get(c.id);
    state.convs.set(c.id, old && old.lastMessage && c.lastMessage && old.lastMessage.seq > c.lastMessage.seq ? { ...c, lastMessage: old.lastMessage } : c);
    if (c.peer) loadUser(c.peer);
  }
  await refreshPresence();
  scheduleRender();
}

async function loadDetails(conv) {
  const d = await client.get(`/v1/conversations/${conv}`);
  const members = new Map(d.members.map((m) => [m.user, m]));
  state.details.set(conv, { members, type: d.type, name: d.name, allMuted: !!d.allMuted, allMutedUntil: d.allMutedUntil,
    announcement: d.announcement || null });
  for (const m of d.members) loadUser(m.user);
  scheduleRender();
  return state.details.get(conv);
}

/** Saves the composer's text as the draft of the conversation it was written in (a second after typing stops). */
function queueDraft() {
  const conv = state.current;
  if (conv == null || state.editing) return;
  clearTimeout(state.draftTimer);
  state.draftTimer = setTimeout(() => flushDraft(conv), 1000);
}

function flushDraft(conv) {
  clearTimeout(state.draftTimer);
  state.draftTimer = null;
  const text = $('composer-input').value;
  const replyTo = state.replying && state.replying.conv === conv ? state.replying.seq : undefined;
  if ((state.draftSaved.get(conv) || '') === text) return;
  state.draftSaved.set(conv, text);
  client.saveDraft(conv, text, replyTo)
    .then((d) => { if (d && d.updatedAt > (state.draftAt.get(conv) || 0)) state.draftAt.set(conv, d.updatedAt); })
    .catch(() => state.draftSaved.delete(conv));
}

/**
 * A draft saved on one of my devices (this one's own saves come back too, and change nothing): shown in the
 * conversation list at once, and put into the open composer unless I am typing something else there.
 */
function applyDraft(d) {
  if (d.updatedAt < (state.draftAt.get(d.conv) || 0)) return;   // an older save, arriving late
  state.draftAt.set(d.conv, d.updatedAt);
  const c = state.convs.get(d.conv);
  if (c) state.convs.set(d.conv, { ...c, draft: d.text ? d : null });
  const saved = state.draftSaved.get(d.conv) || '';
  if (state.current === d.conv && !state.editing && saved !== d.text) {
    const input = $('composer-input');
    if (document.activeElement !== input || input.value === saved) {
      setComposer(d.text);
      state.draftSaved.set(d.conv, d.text);
      const original = d.replyTo ? state.messages.get(d.conv)?.get(d.replyTo) : null;
      if (original) startReply(d.conv, original);
    }
  } else if (state.current !== d.conv) {
    state.draftSaved.set(d.conv, d.text);
  }
  scheduleRender();
}

/** Puts the conversation's latest draft (from any of my devices) into the composer. */
async function restoreDraft(conv) {
  const drafts = await client.drafts();
  const d = drafts.find((x) => x.conv === conv);
  if (state.current !== conv || state.editing) return;
  setComposer(d ? d.text : '');
  state.draftSaved.set(conv, d ? d.text : '');
  const original = d && d.replyTo ? state.messages.get(conv)?.get(d.replyTo) : null;
  if (original) startReply(conv, original);
}

async function openConversation(conv) {
  if (state.current !== conv) cancelEdit();   // the text typed before an edit is back, so that the draft keeps it
  if (state.current != null && state.current !== conv && state.draftTimer) flushDraft(state.current);
  if (state.current !== conv) setComposer('');
  state.current = conv;
  cancelEdit();
  cancelReply();
  state.composeMentions.clear();
  state.reactingTo = null;
  state.inviteShown = null;
  document.body.classList.add('show-chat');
  $('messages').dataset.stick = '1';
  scheduleRender();
  try {
    await loadDetails(conv);
    loadPins(conv).catch(() => {});
    if (!state.messages.has(conv) || state.messages.get(conv).size < 20) await loadHistory(conv, false);
    await restoreDraft(conv);
  } catch (e) { showChatError(e); }
  if (!$('members-panel').hidden) renderMembers();
  $('composer-input').focus();
}

async function loadHistory(conv, older) {
  const msgs = state.messages.get(conv) || new Map();
  state.messages.set(conv, msgs);
  const oldest = older && msgs.size ? Math.min(...msgs.keys()) : undefined;
  const r = await client.history(conv, oldest, 50);
  const reactions = [...msgs.values()].filter((x) => x.kind === 'reaction').sort((a, b) => a.seq - b.seq);
  for (const m of r.messages) {
    if (msgs.has(m.seq)) continue;
    // Reactions that arrived live before this page: replayed in order they give the server's state again.
    msgs.set(m.seq, reactions.filter((x) => x.target === m.seq).reduce(applyReaction, m));
  }
  state.hasMore.set(conv, r.hasMore);
  if (older) $('messages').dataset.prepended = '1';
  scheduleRender();
}

function addMessage(m) {
  const conv = m.conv;
  const msgs = state.messages.get(conv) || new Map();
  state.messages.set(conv, msgs);
  msgs.set(m.seq, m);
  if ((m.kind === 'recall' || m.kind === 'edit') && m.target) {
    const target = msgs.get(m.target);
    if (target) {
      if (m.kind === 'recall') {
        Object.assign(target, { recalled: true, text: null, attachment: null, reactions: undefined, mentions: undefined, mentionAll: undefined });
      } else {
        // The edit replaces the text in place; an edit the server wrote with data (the assistant's streaming
        // state, docs/protocol.md "The assistant's messages") replaces that too.
        target.text = m.text; target.editedAt = m.ts;
        if (m.data !== undefined && m.data !== null) target.data = m.data;
      }
    }
  }
  if (m.kind === 'reaction' && msgs.has(m.target)) msgs.set(m.target, applyReaction(msgs.get(m.target), m));
  const fromOther = m.sender !== client.user.id;
  if (fromOther && ['text', 'custom', 'attachment'].includes(m.kind)) queueDelivered(conv, m.seq);
  const c = state.convs.get(conv);
  if (!c) {
    // A conversation we did not know (someone started a chat with us): fetch the list again, once per burst.
    if (!state.reloadingConvs) state.reloadingConvs = loadConversations().catch(() => {}).finally(() => { state.reloadingConvs = null; });
    return;
  }
  c.lastSeq = Math.max(c.lastSeq, m.seq);
  if (['text', 'custom', 'attachment', 'system'].includes(m.kind)) c.lastMessage = m;
  else if (c.lastMessage && m.target === c.lastMessage.seq) c.lastMessage = msgs.get(m.target) || c.lastMessage;
  if (fromOther && ['text', 'custom', 'attachment'].includes(m.kind)) {
    const visible = conv === state.current && document.visibilityState === 'visible';
    if (!visible) {
      c.unread += 1;
      if (mentionsUser(m, client.user.id)) c.unreadMentions = (c.unreadMentions || 0) + 1;
    }
    state.typing.get(conv)?.delete(m.sender);
    notifyIfHidden(c, m);
  }
  if (m.kind === 'system') loadDetails(conv).catch(() => {});
  if (m.kind === 'system' && ['message_pinned', 'message_unpinned'].includes(m.data?.event)) loadPins(conv).catch(() => {});
  if (m.kind === 'recall' && (state.pins.get(conv) || []).some((p) => p.message.seq === m.target)) loadPins(conv).catch(() => {});
  scheduleRender();
}

const deliveredTimers = new Map();
function queueDelivered(conv, seq) {
  if (seq <= (state.deliveredSent.get(conv) || 0)) return;
  clearTimeout(deliveredTimers.get(conv));
  deliveredTimers.set(conv, setTimeout(() => {
    if (client.receipt(conv, 'delivered', seq)) state.deliveredSent.set(conv, seq);
  }, 200));
}

// ---- Presence and contacts ---------------------------------------------------------------------

async function refreshPresence() {
  const ids = new Set();
  for (const c of state.convs.values()) if (c.peer) ids.add(c.peer);
  for (const k of state.contacts) ids.add(k.user.id);
  if (!ids.size) return;
  try {
    for (const p of await client.get(`/v1/presence?users=${[...ids].join(',')}`)) state.presence.set(p.user, p.status);
  } catch { /* presence is decoration */ }
  scheduleRender();
}

async function loadContacts() {
  state.contacts = await client.get('/v1/contacts');
  for (const k of state.contacts) state.users.set(k.user.id, k.user);
  scheduleRender();
}

function renderContacts() {
  const list = $('contact-list');
  clear(list);
  const incoming = state.contacts.filter((k) => k.state === 'incoming').length;
  $('contacts-badge').hidden = incoming === 0;
  $('contacts-badge').textContent = String(incoming);
  for (const k of state.contacts) {
    const li = el('li', { className: `contact ${k.state}`, dataset: { user: String(k.user.id), state: k.state } });
    li.append(presenceDot(k.user.id), el('span', { className: 'contact-name', text: k.user.displayName || k.user.username }),
      el('span', { className: 'sub', text: ` @${k.user.username} · ${t(`contact.${k.state}`)}` }));
    const actions = el('span', { className: 'actions' });
    const act = (action, fn) => {
      const b = el('button', { type: 'button', className: `link ${action}`, text: t(`contact.${action}`) });
      b.addEventListener('click', async () => { try { await fn(); await loadContacts(); } catch (e) { showChatError(e); } });
      actions.append(b);
    };
    if (k.state === 'incoming') { act('accept', () => client.post(`/v1/contacts/${k.user.id}/accept`)); act('decline', () => client.post(`/v1/contacts/${k.user.id}/decline`)); }
    if (k.state === 'accepted') { act('chat', () => startDirect(k.user.id)); act('remove', () => client.del(`/v1/contacts/${k.user.id}`)); }
    if (k.state === 'outgoing') act('cancel', () => client.del(`/v1/contacts/${k.user.id}`));
    if (k.state === 'blocked') act('unblock', () => client.del(`/v1/contacts/${k.user.id}/block`));
    else act('block', () => client.post(`/v1/contacts/${k.user.id}/block`));
    li.append(actions);
    list.append(li);
  }
}

async function startDirect(userId) {
  const conv = await client.post('/v1/conversations/direct', { userId });
  await loadConversations();
  switchTab('chats');
  await openConversation(conv.id);
}

// ---- Members -----------------------------------------------------------------------------------

async function renderMembers() {
  const conv = state.current;
  if (conv == null) return;
  const c = state.convs.get(conv);
  const d = state.details.get(conv) || await loadDetails(conv);
  const list = $('member-list');
  clear(list);
  const myRole = d.members.get(client.user.id)?.role || 'member';
  const rank = { member: 0, admin: 1, owner: 2 };
  for (const [u, m] of d.members) {
    const li = el('li', { className: 'member', dataset: { user: String(u) } });
    li.append(presenceDot(u), el('span', { text: u === client.user.id ? t('member.you', { name: userName(u) }) : userName(u) }),
      el('span', { className: 'sub', text: ` ${t(`role.${m.role}`)}` }));
    const memberMuted = m.muted && (!m.mutedUntil || m.mutedUntil > Date.now());
    if (memberMuted) li.append(el('span', { className: 'sub muted-label', text: ` · ${m.mutedUntil ? t('member.mutedUntil', { until: formatTime(m.mutedUntil) }) : t('member.muted')}` }));
    if (c.type === 'group' && u !== client.user.id && rank[myRole] > rank[m.role]) {
      // Muting asks for how long first (an hour unless another is chosen); a muted member has Unmute instead.
      const muteFor = memberMuted ? null : muteForSelect('mute-for', MUTE_FOR[0][1]);
      if (muteFor) li.append(muteFor);
      const mute = el('button', { type: 'button', className: 'link mute-member', text: memberMuted ? t('member.unmute') : t('member.mute') });
      mute.addEventListener('click', async () => {
        try {
          await client.muteMember(conv, u, memberMuted ? { muted: false } : { until: muteUntil(muteFor) });
          await loadDetails(conv); renderMembers();
        } catch (e) { showChatError(e); }
      });
      li.append(mute);
      const rm = el('button', { type: 'button', className: 'link remove', text: t('member.remove') });
      rm.addEventListener('click', async () => {
        try { await client.del(`/v1/conversations/${conv}/members/${u}`); await loadDetails(conv); renderMembers(); } catch (e) { showChatError(e); }
      });
      li.append(rm);
    }
    list.append(li);
  }
  $('add-member-form').hidden = !(c.type === 'group' && rank[myRole] >= 1);
  $('leave-group').hidden = !(c.type === 'group' && myRole !== 'owner');
  const allMuted = d.allMuted && (!d.allMutedUntil || d.allMutedUntil > Date.now());
  $('mute-all').hidden = !(c.type === 'group' && rank[myRole] >= 1);
  // How long "Mute everyone" lasts (until turned off unless another is chosen; the choice stays while the panel
  // is redrawn), and, while the group is muted, until when.
  const allFor = $('mute-all-for');
  const chosen = allFor.value || '0';
  allFor.replaceWith(Object.assign(muteForSelect('', Number(chosen)), { id: 'mute-all-for', hidden: $('mute-all').hidden || allMuted }));
  $('mute-all-state').hidden = !(c.type === 'group' && allMuted);
  $('mute-all-state').textContent = d.allMutedUntil ? t('group.mutedUntil', { until: formatTime(d.allMutedUntil) }) : t('group.mutedForever');
  $('edit-announcement').hidden = !(c.type === 'group' && rank[myRole] >= 1);
  $('make-invite').hidden = !(c.type === 'group' && rank[myRole] >= 1);
  $('invite-link').hidden = !state.inviteShown;
  $('invite-link').value = state.inviteShown || '';
  renderJoinRequests(conv, c.type === 'group' && rank[myRole] >= 1).catch(showChatError);
  $('mute-all').textContent = allMuted ? t('group.unmuteAll') : t('group.muteAll');
  $('mute-all').dataset.on = allMuted ? '1' : '0';
  $('block-peer').hidden = c.type !== 'direct';
}

// ---- Composer ----------------------------------------------------------------------------------

/** Puts `text` in the composer, as tall as its lines. */
function setComposer(text) {
  $('composer-input').value = text;
  fitComposer();
}

/** Fits the composer's height to its text: one line when empty, more as lines are added (up to the CSS cap). */
function fitComposer() {
  const input = $('composer-input');
  input.style.height = '';
  if (!input.offsetParent) return;   // not laid out (hidden): rows="1" holds until it is
  input.style.height = `${input.scrollHeight + input.offsetHeight - input.clientHeight}px`;
}

/** Whether `m` is mine and may be edited: a text message of mine, not recalled (the server's rule). */
function canEdit(m) {
  return m.sender === client.user.id && m.kind === 'text' && !m.recalled;
}

/** My newest message in `conv` that I may edit (what the Up key edits), or null. */
function lastEditable(conv) {
  let last = null;
  for (const m of (state.messages.get(conv) || new Map()).values()) {
    if (canEdit(m) && (!last || m.seq > last.seq)) last = m;
  }
  return last;
}

/** Edits `m` in the composer; what was typed there comes back when the edit is sent or cancelled. */
function startEdit(conv, m) {
  const before = state.editing ? state.editing.before : $('composer-input').value;
  state.editing = { conv, seq: m.seq, before };
  setComposer(m.text || '');
  $('edit-banner').hidden = false;
  $('composer-input').focus();
}

function startReply(conv, m) {
  cancelEdit();
  state.replying = { conv, seq: m.seq };
  $('reply-text').textContent = `${userName(m.sender)}: ${preview(m)}`;
  $('reply-banner').hidden = false;
  $('composer-input').focus();
}

function cancelReply() {
  state.replying = null;
  $('reply-banner').hidden = true;
}

/** Members the "@…" being typed may mean (and `@all` for the group's owner and admins). */
function mentionCandidates() {
  const q = state.mentionQuery;
  const d = state.details.get(state.current);
  if (!q || !d) return [];
  const needle = q.text.toLowerCase();
  const out = [];
  const me = d.members.get(client.user.id);
  if (d.type === 'group' && me && (me.role === 'owner' || me.role === 'admin') && 'all'.startsWith(needle)) out.push({ all: true, label: 'all' });
  for (const u of d.members.keys()) {
    if (u === client.user.id) continue;
    const p = state.users.get(u);
    const names = [p?.username || '', p?.displayName || ''].map((n) => n.toLowerCase());
    if (names.some((n) => n.startsWith(needle))) out.push({ user: u, label: userName(u) });
  }
  return out.slice(0, 8);
}

function updateMentionQuery() {
  const input = $('composer-input');
  const before = input.value.slice(0, input.selectionStart ?? input.value.length);
  const match = /(^|\s)@([^\s@]*)$/.exec(before);
  state.mentionQuery = match ? { start: before.length - match[2].length - 1, text: match[2] } : null;
  renderMentionList();
}

function renderMentionList() {
  const list = $('mention-list');
  clear(list);
  const options = mentionCandidates();
  list.hidden = !options.length;
  for (const o of options) {
    const li = el('li', { className: 'mention-option', text: `@${o.label}`, dataset: { user: o.all ? 'all' : String(o.user) } });
    li.addEventListener('mousedown', (e) => { e.preventDefault(); pickMention(o); });
    list.append(li);
  }
}

function pickMention(o) {
  const input = $('composer-input');
  const q = state.mentionQuery;
  if (!q) return;
  const tag = `@${o.label}`;
  const end = q.start + 1 + q.text.length;
  setComposer(`${input.value.slice(0, q.start)}${tag} ${input.value.slice(end)}`);
  state.composeMentions.set(o.all ? 'all' : o.user, tag);
  state.mentionQuery = null;
  renderMentionList();
  input.focus();
}

/** The mentions of `text`: those picked from the list whose "@name" is still in it. */
function mentionsIn(text) {
  const users = [];
  let all = false;
  for (const [who, tag] of state.composeMentions) {
    if (!text.includes(tag)) continue;
    if (who === 'all') all = true; else users.push(who);
  }
  return { mentions: users, mentionAll: all };
}

function cancelEdit() {
  if (!state.editing) return;
  const { before } = state.editing;
  state.editing = null;
  $('edit-banner').hidden = true;
  setComposer(before || '');
}

function sendTyping(active) {
  const conv = state.current;
  if (conv == null) return;
  if (active) {
    if (Date.now() - state.typingSentAt > 3000) { client.typing(conv, true); state.typingSentAt = Date.now(); }
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(() => sendTyping(false), 4000);
  } else {
    clearTimeout(state.typingTimer);
    if (state.typingSentAt) client.typing(conv, false);
    state.typingSentAt = 0;
  }
}

function showChatError(e) {
  $('chat-error').textContent = describeError(e);
  setTimeout(() => { $('chat-error').textContent = ''; }, 6000);
}

function switchTab(tab) {
  if (tab !== 'chats' && state.search) closeSearch();
  $('tab-chats').classList.toggle('active', tab === 'chats');
  $('tab-contacts').classList.toggle('active', tab === 'contacts');
  $('chats-panel').hidden = tab !== 'chats' || !!state.search;
  $('contacts-panel').hidden = tab !== 'contacts';
  if (tab === 'contacts') loadContacts().catch(showChatError);
}

// ---- Search ------------------------------------------------------------------------------------

async function runSearch(more) {
  const s = state.search;
  if (!s) return;
  $('search-status').textContent = t('search.running');
  try {
    const page = await client.search(s.q, { conv: s.conv, sender: s.sender, from: s.from, to: s.to, before: more ? s.next : undefined, limit: 20 });
    if (state.search !== s) return;   // a newer search replaced this one
    s.results = more ? s.results.concat(page.results) : page.results;
    s.next = page.next;
    renderSearch();
  } catch (e) {
    $('search-status').textContent = describeError(e);
  }
}

function renderSearch() {
  const s = state.search;
  $('search-panel').hidden = !s;
  $('chats-panel').hidden = !!s || !$('tab-chats').classList.contains('active');
  if (!s) return;
  const list = $('search-results');
  clear(list);
  const n = s.results.length;
  $('search-status').textContent = !n ? t('search.none') : s.next ? t('search.countMore', { n }) : n === 1 ? t('search.one') : t('search.count', { n });
  for (const hit of s.results) {
    const m = hit.message;
    const li = el('li', { className: 'search-hit', dataset: { conv: String(m.conv), seq: String(m.seq) } });
    const c = state.convs.get(m.conv);
    const top = el('div', { className: 'conv-top' });
    top.append(el('span', { className: 'conv-name', text: `${c ? convTitle(c) : `#${m.conv}`} · ${userName(m.sender)}` }),
      el('time', { className: 'conv-time', text: formatTime(m.ts) }));
    const text = el('div', { className: 'hit-text' });
    for (const seg of hit.highlight) text.append(seg.match ? el('mark', { text: seg.text }) : document.createTextNode(seg.text));
    li.append(top, text);
    li.addEventListener('click', async () => {
      await openConversation(m.conv);
      await jumpTo(m.conv, m.seq).catch(showChatError);
    });
    list.append(li);
  }
  $('search-more').hidden = !s.next;
}

/**
 * The search filters as the API takes them: the sender's id (from a username), and the dates as a window of local
 * days (`from` the start of the first, `to` the start of the day after the last; either may be left out).
 */
async function searchFilters() {
  const out = {};
  const name = $('search-sender').value.trim();
  if (name) {
    try { out.sender = (await userByName(name)).id; } catch (e) {
      throw e.code === 'not_found' ? new Error(t('search.noUser', { name })) : e;
    }
  }
  const day = (value, after) => {
    const [y, m, d] = value.split('-').map(Number);
    return new Date(y, m - 1, d + (after ? 1 : 0)).getTime();
  };
  if ($('search-since').value) out.from = day($('search-since').value, false);
  if ($('search-until').value) out.to = day($('search-until').value, true);
  return out;
}

function closeSearch() {
  state.search = null;
  $('search-input').value = '';
  for (const id of ['search-sender', 'search-since', 'search-until']) $(id).value = '';
  $('search-filters').open = false;
  renderSearch();
}

function wire() {
  applyTo(document);
  // A new language redraws what code drew: the page, and the member list when it is open.
  const relabel = () => { render(); if (!$('members-panel').hidden) renderMembers().catch(showChatError); };
  for (const select of document.querySelectorAll('select.lang-select')) wireLanguageSelect(select, relabel);
  for (const select of document.querySelectorAll('select.theme-select')) wireThemeSelect(select);
  $('search-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = $('search-input').value.trim();
    if (!q) { closeSearch(); return; }
    const s = { q, conv: $('search-here').checked && state.current != null ? state.current : undefined, results: [], next: null };
    state.search = s;
    renderSearch();
    try {
      Object.assign(s, await searchFilters());
    } catch (err) {
      if (state.search === s) $('search-status').textContent = describeError(err);
      return;
    }
    if (state.search === s) runSearch(false);
  });
  $('search-input').addEventListener('keydown', (e) => { if (e.key === 'Escape') closeSearch(); });
  $('close-search').addEventListener('click', closeSearch);
  $('search-more').addEventListener('click', () => runSearch(true));
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('login-error').textContent = '';
    $('login-submit').disabled = true;
    try {
      await client.login($('login-username').value, $('login-password').value);
      $('login-password').value = '';
      await enterApp();
    } catch (err) {
      $('login-error').textContent = describeError(err, { login: true });
    } finally {
      $('login-submit').disabled = false;
    }
  });
  $('logout').addEventListener('click', async () => {
    await client.logout();
    for (const url of state.blobURLs.values()) URL.revokeObjectURL(url);
    location.reload();
  });
  $('tab-chats').addEventListener('click', () => switchTab('chats'));
  $('tab-contacts').addEventListener('click', () => switchTab('contacts'));
  $('back').addEventListener('click', () => { document.body.classList.remove('show-chat'); state.current = null; scheduleRender(); });

  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('composer-input');
    const text = input.value.trim();
    if (!text || state.current == null) return;
    if (state.editing) {
      client.edit(state.editing.conv, state.editing.seq, text);
      cancelEdit();
    } else {
      const replyTo = state.replying && state.replying.conv === state.current ? state.replying.seq : undefined;
      client.send(state.current, text, { replyTo, ...mentionsIn(text) });
      setComposer('');
      clearTimeout(state.draftTimer);
      state.draftTimer = null;
      if (state.draftSaved.get(state.current)) { state.draftSaved.set(state.current, ''); client.saveDraft(state.current, '').catch(() => {}); }
      state.composeMentions.clear();
      cancelReply();
    }
    sendTyping(false);
    $('messages').dataset.stick = '1';
    scheduleRender();
  });
  $('composer-input').addEventListener('input', () => {
    if ($('composer-input').value) sendTyping(true);
    fitComposer();
    updateMentionQuery();
    queueDraft();
  });
  // Keys: Enter sends (Shift+Enter breaks the line: the textarea's own behaviour); Enter or Tab picks a mention;
  // Up in an empty composer edits my last message; Escape cancels an edit or a reply (and closes the menus, below).
  $('composer-input').addEventListener('keydown', (e) => {
    // Keys that an input method is composing with (pinyin, say: Enter confirms, Escape drops) are the IME's.
    if (e.isComposing || e.keyCode === 229) return;
    const plain = !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey;
    if (e.key === 'Escape') { cancelEdit(); cancelReply(); return; }
    if ((e.key === 'Enter' || e.key === 'Tab') && state.mentionQuery) {
      const first = mentionCandidates()[0];
      if (first) { e.preventDefault(); pickMention(first); return; }
    }
    if (e.key === 'Enter' && plain) {
      e.preventDefault();
      $('composer').requestSubmit();
    } else if (e.key === 'ArrowUp' && plain && !state.editing && state.current != null && $('composer-input').value === '') {
      const last = lastEditable(state.current);
      if (last) { e.preventDefault(); startEdit(state.current, last); }
    }
  });
  // Escape anywhere closes the open menus: the mention suggestions and the emoji picker.
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || e.isComposing) return;
    if (state.mentionQuery) { state.mentionQuery = null; renderMentionList(); }
    if (state.reactingTo != null) { state.reactingTo = null; scheduleRender(); }
  });
  $('cancel-edit').addEventListener('click', cancelEdit);
  $('cancel-reply').addEventListener('click', cancelReply);
  $('file-input').addEventListener('change', async () => {
    const file = $('file-input').files[0];
    $('file-input').value = '';
    if (!file || state.current == null) return;
    const conv = state.current;
    try {
      const ref = await client.uploadAttachment(conv, file);
      if (ref.contentType.startsWith('image/')) state.blobURLs.set(ref.id, URL.createObjectURL(file));
      client.sendAttachment(conv, ref.id);
    } catch (e) {
      showChatError(e.code === 'network' ? new Error(t('error.offlineAttachment')) : e);
    }
  });
  $('messages').addEventListener('scroll', () => {
    const list = $('messages');
    list.dataset.stick = list.scrollHeight - list.scrollTop - list.clientHeight < 80 ? '1' : '0';
    const conv = state.current;
    if (list.scrollTop < 40 && conv != null && state.hasMore.get(conv) && !list.dataset.loading) {
      list.dataset.loading = '1';
      loadHistory(conv, true).catch(showChatError).finally(() => { delete list.dataset.loading; });
    }
  });

  $('new-chat').addEventListener('click', () => showDialog(t('dialog.newChat'), [{ name: 'username', label: t('dialog.username') }], async (v) => {
    const u = await userByName(v.username);
    await startDirect(u.id);
  }));
  $('new-group').addEventListener('click', () => showDialog(t('dialog.newGroup'), [
    { name: 'name', label: t('dialog.groupName') },
    { name: 'members', label: t('dialog.members') },
  ], async (v) => {
    const names = v.members.split(',').map((s) => s.trim()).filter(Boolean);
    const ids = [];
    for (const n of names) ids.push((await userByName(n)).id);
    const g = await client.post('/v1/conversations/group', { name: v.name.trim(), members: ids });
    await loadConversations();
    await openConversation(g.id);
  }));
  $('add-contact-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const u = await userByName($('add-contact-name').value);
      await client.post(`/v1/contacts/${u.id}/request`);
      $('add-contact-name').value = '';
      await loadContacts();
    } catch (err) { showChatError(err); }
  });
  $('members-btn').addEventListener('click', () => {
    const p = $('members-panel');
    p.hidden = !p.hidden;
    if (!p.hidden) renderMembers().catch(showChatError);
  });
  $('close-members').addEventListener('click', () => { $('members-panel').hidden = true; });
  $('add-member-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const u = await userByName($('add-member-name').value);
      await client.post(`/v1/conversations/${state.current}/members`, { users: [u.id] });
      $('add-member-name').value = '';
      await loadDetails(state.current);
      await renderMembers();
    } catch (err) { showChatError(err); }
  });
  $('forward-go').addEventListener('click', forwardPicked);
  $('edit-announcement').addEventListener('click', editAnnouncement);
  $('make-invite').addEventListener('click', makeInvite);
  window.addEventListener('hashchange', () => { openInviteFromURL(); });
  $('forward-cancel').addEventListener('click', () => { state.forwarding = null; scheduleRender(); });
  $('mute-all').addEventListener('click', async () => {
    const conv = state.current;
    try {
      const on = $('mute-all').dataset.on !== '1';
      await client.muteGroup(conv, on ? { until: muteUntil($('mute-all-for')) } : { muted: false });
      await loadDetails(conv); renderMembers();
    } catch (e) { showChatError(e); }
  });
  $('leave-group').addEventListener('click', async () => {
    try {
      await client.post(`/v1/conversations/${state.current}/leave`);
      state.convs.delete(state.current);
      state.current = null;
      $('members-panel').hidden = true;
      scheduleRender();
    } catch (err) { showChatError(err); }
  });
  $('block-peer').addEventListener('click', async () => {
    const c = state.convs.get(state.current);
    if (!c || !c.peer) return;
    try { await client.post(`/v1/contacts/${c.peer}/block`); await loadContacts(); showChatError(new Error(t('blocked.peer', { name: userName(c.peer) }))); } catch (err) { showChatError(err); }
  });
  document.addEventListener('visibilitychange', scheduleRender);
  $('notify-toggle').addEventListener('click', askForNotifications);
  renderNotifyButton();

  client.addEventListener('state', () => { renderConnection(); scheduleRender(); });
  client.addEventListener('queue', scheduleRender);
  client.addEventListener('ready', () => { loadConversations().catch(() => {}); openInviteFromURL(); });
  client.addEventListener('message', (e) => addMessage(e.detail));
  client.addEventListener('ack', scheduleRender);
  client.addEventListener('sendfailed', (e) => {
    const { item, error } = e.detail;
    scheduleRender();
    // Refused as muted: the page's view of the mutes was behind; fetch it, and say until when.
    if (error.code === 'muted' && item?.conv != null) {
      loadDetails(item.conv).then(() => {
        const why = sendMuteReason(item.conv);
        showChatError(why ? new Error(why) : error);
        scheduleRender();
      }, () => showChatError(error));
    } else showChatError(error);
  });
  client.addEventListener('error', (e) => showChatError(e.detail));
  client.addEventListener('receipt', (e) => {
    const r = e.detail;
    const d = state.details.get(r.conv);
    const m = d?.members.get(r.user);
    if (m) {
      if (r.kind === 'read') m.readSeq = Math.max(m.readSeq, r.seq);
      else m.deliveredSeq = Math.max(m.deliveredSeq, r.seq);
    }
    if (r.user === client.user.id && r.kind === 'read') {
      const c = state.convs.get(r.conv);
      if (c && r.seq >= c.lastSeq) { c.unread = 0; c.unreadMentions = 0; }   // read on another device
    }
    scheduleRender();
  });
  client.addEventListener('typing', (e) => {
    const ev = e.detail;
    const map = state.typing.get(ev.conv) || new Map();
    state.typing.set(ev.conv, map);
    clearTimeout(map.get(ev.user));
    if (ev.active) map.set(ev.user, setTimeout(() => { map.delete(ev.user); scheduleRender(); }, 6000));
    else map.delete(ev.user);
    scheduleRender();
  });
  client.addEventListener('presence', (e) => { state.presence.set(e.detail.user, e.detail.status); scheduleRender(); });
  client.addEventListener('draft', (e) => applyDraft(e.detail));
  client.addEventListener('session', (e) => { if (!e.detail) location.reload(); });
}

async function enterApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  const me = client.user;
  $('me').textContent = me.displayName || me.username;
  state.users.set(me.id, me);
  await loadConversations();
  loadContacts().catch(() => {});
  client.connect();
  render();
}

async function start() {
  wire();
  if (client.session) {
    try {
      await client.get('/v1/me');
      await enterApp();
      return;
    } catch { /* expired or revoked: log in again */ }
  }
  $('login').hidden = false;
  $('login-username').focus();
}

start();
