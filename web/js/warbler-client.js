// Warbler JavaScript client: REST + WebSocket for browsers, with reconnect, resume and an offline send queue.
// Documented for application developers in docs/web-client.md; the protocol is docs/protocol.md.
//
//   import { WarblerClient } from './warbler-client.js';
//   const client = new WarblerClient();                 // same origin as the page
//   await client.login('alice', 'correct horse');
//   client.addEventListener('message', (e) => show(e.detail));
//   client.connect();
//   client.send(12, 'hello');                            // queued while offline, sent on reconnect

const SESSION_KEY = 'warbler.session';

/**
 * An error answered by the server (REST `{"error":{code,message}}` or a socket `error` frame), with the server's
 * `code` (docs/protocol.md, "Errors"), or one of this module's own: `network` (the server could not be reached) and
 * `not_logged_in` (a call that needs a session, without one; status 401). `message` is English, for logs and
 * developers; a page shows its users a sentence chosen by `code`, in their language.
 */
export class WarblerError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.name = 'WarblerError';
    this.code = code;
    this.status = status;
  }
}

/** A random client message id (the server makes sends idempotent per sender and cid). */
export /**
 * A query string the server reads as meant: URLSearchParams writes a space as '+' (form encoding), which the server
 * takes literally, so spaces go as %20 (a literal '+' is already %2B).
 */
function query(params) { return params.toString().replace(/\+/g, '%20'); }

function newCid() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** A key-value store over localStorage (or any object with getItem/setItem/removeItem). */
class Store {
  constructor(backend) { this.backend = backend; }
  get(key, fallback) {
    try {
      const v = this.backend.getItem(key);
      return v == null ? fallback : JSON.parse(v);
    } catch { return fallback; }
  }
  set(key, value) { this.backend.setItem(key, JSON.stringify(value)); }
  remove(key) { this.backend.removeItem(key); }
}

/**
 * A Warbler client for one browser origin.
 *
 * Events (each a CustomEvent, payload in `detail`):
 * - `state`    {state: 'offline'|'connecting'|'online', reason}  connection state changed
 * - `ready`    {user, session}                                   authenticated and resumed (after `synced`)
 * - `message`  Message                                           a new message, exactly once per (conv, seq)
 * - `ack`      {cid, conv, seq, ts, duplicate}                   the server stored one of our sends
 * - `sendfailed` {item, error}                                   a send the server refused for good (removed from the queue)
 * - `receipt`  {conv, user, kind, seq}
 * - `typing`   {conv, user, active}
 * - `presence` {user, status, lastSeen}
 * - `queue`    {pending: [items]}                                the offline queue changed
 * - `session`  {user}|null                                       logged in, refreshed, or logged out
 * - `error`    WarblerError                                      a socket error not tied to a send
 */
export class WarblerClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.baseURL]   server origin, default the page's (`location.origin`)
   * @param {Storage} [options.storage]  where the session, cursors and queue persist (default localStorage)
   * @param {string} [options.device]    device name shown in the server's session list
   * @param {number} [options.pingSeconds]  how often to check the socket is alive (default 25)
   * @param {number} [options.maxBackoffSeconds]  longest wait between reconnects (default 30)
   */
  constructor(options = {}) {
    super();
    this.baseURL = (options.baseURL || globalThis.location.origin).replace(/\/$/, '');
    this.store = new Store(options.storage || globalThis.localStorage);
    this.device = options.device || 'web';
    this.pingSeconds = options.pingSeconds || 25;
    this.maxBackoffSeconds = options.maxBackoffSeconds || 30;
    this.session = this.store.get(SESSION_KEY, null);
    this.state = 'offline';
    this.ws = null;
    this.wanted = false;        // connect() called and not disconnect()ed
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.awaitingPong = null;
    this.refreshing = null;
    this.cursors = {};
    this.queue = [];
    this.inFlight = new Set(); // cids written on the current socket
    this.loadUserState();
    this.onOnline = () => { if (this.wanted && this.state !== 'online') this.reconnectNow('network is back'); };
    this.onOffline = () => { if (this.ws) this.dropSocket('the browser is offline'); };
    globalThis.addEventListener?.('online', this.onOnline);
    globalThis.addEventListener?.('offline', this.onOffline);
  }

  /** The logged-in user ({id, username, displayName, admin}) or null. */
  get user() { return this.session ? this.session.user : null; }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  // ---- Session --------------------------------------------------------------------------------

  /** Logs in; keeps the session (access and refresh token) in storage. Resolves to the user. */
  async login(username, password) {
    const r = await this.request('POST', '/v1/auth/login', { username, password, device: this.device }, { auth: false });
    this.setSession(r);
    return r.user;
  }

  /** Revokes this login on the server, forgets tokens, cursors and queue, and closes the socket. */
  async logout() {
    const s = this.session;
    this.disconnect();
    if (s) {
      try { await this.request('POST', '/v1/auth/logout', { refreshToken: s.refreshToken }, { auth: false }); } catch { /* signed out locally anyway */ }
      this.store.remove(this.key('cursors', s.user.id));
      this.store.remove(this.key('queue', s.user.id));
    }
    this.clearSession();
  }

  setSession(r) {
    this.session = { user: r.user, accessToken: r.accessToken, refreshToken: r.refreshToken, expiresAt: Date.now() + r.expiresIn * 1000 };
    this.store.set(SESSION_KEY, this.session);
    this.loadUserState();
    this.emit('session', { user: r.user });
  }

  clearSession() {
    this.session = null;
    this.store.remove(SESSION_KEY);
    this.cursors = {};
    this.queue = [];
    this.emit('session', null);
  }

  key(what, userId) { return `warbler.${what}.${userId}`; }

  loadUserState() {
    if (!this.session) return;
    this.cursors = this.store.get(this.key('cursors', this.session.user.id), {});
    this.queue = this.store.get(this.key('queue', this.session.user.id), []);
  }

  saveCursors() { if (this.session) this.store.set(this.key('cursors', this.session.user.id), this.cursors); }

  saveQueue() {
    if (this.session) this.store.set(this.key('queue', this.session.user.id), this.queue);
    this.emit('queue', { pending: this.queue.slice() });
  }

  /**
   * Exchanges the refresh token for a new pair. Serialised across tabs with the Web Locks API where present:
   * refresh tokens are single-use, and a second use would sign the user out everywhere.
   */
  async refresh() {
    if (this.refreshing) return this.refreshing;
    const run = async () => {
      // Another tab may have refreshed while we waited for the lock: take its tokens.
      const stored = this.store.get(SESSION_KEY, null);
      if (stored && this.session && stored.refreshToken !== this.session.refreshToken && stored.user.id === this.session.user.id) {
        this.session = stored;
        return;
      }
      if (!this.session) throw new WarblerError('not_logged_in', 'not logged in', 401);
      try {
        const r = await this.request('POST', '/v1/auth/refresh', { refreshToken: this.session.refreshToken }, { auth: false });
        this.setSession(r);
      } catch (e) {
        if (e.status === 401) { this.disconnect(); this.clearSession(); }
        throw e;
      }
    };
    const locked = globalThis.navigator?.locks ? () => navigator.locks.request('warbler.refresh', run) : run;
    this.refreshing = locked().finally(() => { this.refreshing = null; });
    return this.refreshing;
  }

  /** A valid access token, refreshed first when it expires within 30 seconds. */
  async accessToken() {
    if (!this.session) throw new WarblerError('not_logged_in', 'not logged in', 401);
    if (this.session.expiresAt - Date.now() < 30000) await this.refresh();
    return this.session.accessToken;
  }

  // ---- REST -----------------------------------------------------------------------------------

  /**
   * Calls the REST API. `body` is sent as JSON unless it is a Blob/ArrayBuffer (then `contentType` applies).
   * Retries once after refreshing on 401. Resolves to the parsed JSON, or null for 204; rejects with WarblerError.
   */
  async request(method, path, body, { auth = true, contentType, raw = false } = {}) {
    for (let tryNo = 0; ; tryNo++) {
      const headers = {};
      if (auth) headers.Authorization = `Bearer ${await this.accessToken()}`;
      let payload;
      if (body instanceof Blob || body instanceof ArrayBuffer) {
        payload = body;
        headers['Content-Type'] = contentType || body.type || 'application/octet-stream';
      } else if (body !== undefined) {
        payload = JSON.stringify(body);
        headers['Content-Type'] = 'application/json';
      }
      let res;
      try {
        res = await fetch(this.baseURL + path, { method, headers, body: payload, credentials: 'omit', cache: 'no-store' });
      } catch (e) {
        throw new WarblerError('network', `cannot reach the server: ${e.message}`);
      }
      if (res.status === 401 && auth && tryNo === 0) { await this.refresh(); continue; }
      if (!res.ok) {
        let code = 'http_' + res.status, message = res.statusText;
        try { const j = await res.json(); if (j.error) { code = j.error.code; message = j.error.message; } } catch { /* not JSON */ }
        throw new WarblerError(code, message, res.status);
      }
      if (raw) return res;
      if (res.status === 204) return null;
      return res.json();
    }
  }

  get(path) { return this.request('GET', path); }
  post(path, body) { return this.request('POST', path, body === undefined ? {} : body); }
  patch(path, body) { return this.request('PATCH', path, body); }
  put(path, body) { return this.request('PUT', path, body); }
  del(path) { return this.request('DELETE', path); }

  /** Uploads a File/Blob to conversation `conv`; resolves to the attachment reference {id, name, contentType, size}. */
  uploadAttachment(conv, file, name = file.name || 'file') {
    return this.request('POST', `/v1/conversations/${conv}/attachments?name=${encodeURIComponent(name)}`, file,
      { contentType: file.type || 'application/octet-stream' });
  }

  /** Downloads an attachment with the Authorization header (tokens never go in URLs); resolves to a Blob. */
  async fetchAttachment(id) {
    const res = await this.request('GET', `/v1/attachments/${encodeURIComponent(id)}`, undefined, { raw: true });
    return res.blob();
  }

  /** History before `before` (a seq; omit for the newest), newest first: {messages, hasMore}. */
  history(conv, before, limit = 50) {
    const q = before ? `before=${before}&limit=${limit}` : `limit=${limit}`;
    return this.get(`/v1/conversations/${conv}/messages?${q}`);
  }

  // ---- WebSocket ------------------------------------------------------------------------------

  /** Opens the socket and keeps it open (reconnecting with backoff) until disconnect() or logout(). */
  connect() {
    if (!this.session) throw new WarblerError('not_logged_in', 'log in first', 401);
    this.wanted = true;
    if (!this.ws) this.open();
  }

  /**
   * Searches the messages you can read: every word of `q` must occur (ignoring case; Chinese needs no spaces).
   * Options: `conv`, `sender`, `from`/`to` (ms), `before` (a page's `next`), `limit` (1–50). Resolves to
   * `{results: [{message, highlight: [{text, match}]}], next}`, newest first.
   */
  search(q, { conv, sender, from, to, before, limit } = {}) {
    const params = new URLSearchParams({ q });
    for (const [k, v] of Object.entries({ conv, sender, from, to, before, limit })) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
    return this.get(`/v1/search?${query(params)}`);
  }

  /**
   * Mutes a conversation's notifications for you (`until`: ms, or until you unmute), or unmutes it (`muted` false).
   * Unread counts and mentions still count.
   */
  muteConversation(conv, { muted = true, until } = {}) {
    return muted ? this.put(`/v1/conversations/${conv}/mute`, until ? { until } : {}) : this.del(`/v1/conversations/${conv}/mute`);
  }

  /** Owner and admins: mutes (禁言) a member below their role until `until` (ms; or until unmuted), or unmutes them. */
  muteMember(conv, user, { muted = true, until } = {}) {
    const path = `/v1/conversations/${conv}/members/${user}/mute`;
    return muted ? this.put(path, until ? { until } : {}) : this.del(path);
  }

  /** Owner and admins: mutes the whole group (全员禁言) until `until` (ms; or until unmuted), or lifts it. */
  muteGroup(conv, { muted = true, until } = {}) {
    return muted ? this.put(`/v1/conversations/${conv}/mute-all`, until ? { until } : {}) : this.del(`/v1/conversations/${conv}/mute-all`);
  }

  /**
   * Forwards messages `seqs` of conversation `from` to conversation `conv`, in order, attachments included (no
   * upload). Resolves to `{acks: [{cid, conv, seq, ts, duplicate}]}`; the copies arrive as `message` events like any
   * other. Pass the same `cid` to retry: copies already stored are answered `duplicate`, never stored twice.
   */
  forward(conv, from, seqs, cid = newCid()) {
    return this.post(`/v1/conversations/${conv}/forward`, { cid, from, seqs });
  }

  /**
   * Owner and admins: makes an invite link to group `conv`. Options: `expiresInSeconds` (60 to a year), `maxUses`
   * (1–10000), `approval` (joining makes a request an admin accepts). Resolves to the invite `{code, …}`.
   */
  createInvite(conv, { expiresInSeconds, maxUses, approval } = {}) {
    return this.post(`/v1/conversations/${conv}/invites`, { expiresInSeconds, maxUses, approval });
  }

  /** Joins through invite `code`, or asks to: resolves to `{outcome: 'joined' | 'requested', conversation}`. */
  joinInvite(code) { return this.post(`/v1/invites/${encodeURIComponent(code)}/join`); }

  /** Owner and admins: accepts (`accept` true) or declines a pending join request of `user`. */
  resolveJoinRequest(conv, user, accept) { return this.post(`/v1/conversations/${conv}/join-requests/${user}/${accept ? 'accept' : 'decline'}`); }

  /**
   * Saves what you are writing in `conv` for your other devices (`replyTo`: the message it answers); an empty text
   * deletes the draft. `drafts()` resolves to `[{conv, text, replyTo, updatedAt}]`, latest first.
   */
  saveDraft(conv, text, replyTo) {
    return text ? this.put(`/v1/conversations/${conv}/draft`, { text, replyTo }) : this.del(`/v1/conversations/${conv}/draft`);
  }

  drafts() { return this.get('/v1/drafts'); }

  // ---- Compliance (admins; every search and export is recorded in the audit trail) -------------

  /** Searches every conversation; the options and the answer are those of search(). */
  complianceSearch(q, { conv, sender, from, to, before, limit } = {}) {
    const params = new URLSearchParams({ q });
    for (const [k, v] of Object.entries({ conv, sender, from, to, before, limit })) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
    return this.get(`/v1/admin/compliance/search?${query(params)}`);
  }

  /**
   * Exports a conversation's messages (`conv`), or everything one user sent (`user`), with `from` <= ts < `to` (ms), as
   * a signed archive. Resolves to {blob, filename, sha256, auditId}.
   */
  async complianceExport({ conv, user, from, to }) {
    const body = { from, to };
    if (conv !== undefined && conv !== null) body.conv = conv;
    if (user !== undefined && user !== null) body.user = user;
    const res = await this.request('POST', '/v1/admin/compliance/exports', body, { raw: true });
    const disposition = res.headers.get('Content-Disposition') || '';
    const filename = (/filename="([^"]+)"/.exec(disposition) || [])[1] || 'warbler-export.tar.gz';
    return { blob: await res.blob(), filename, sha256: res.headers.get('X-Warbler-Export-Sha256') || '',
      auditId: Number(res.headers.get('X-Warbler-Audit-Id') || 0) };
  }

  /** The audit trail of compliance searches and exports, newest first; `before`: an entry's id, for older ones. */
  complianceAudit({ before, limit } = {}) {
    const params = new URLSearchParams();
    if (before) params.set('before', String(before));
    if (limit) params.set('limit', String(limit));
    return this.get(`/v1/admin/compliance/audit?${query(params)}`);
  }

  /** The Ed25519 public key exports are signed with: {algorithm, publicKey, fingerprint}. */
  complianceKey() { return this.get('/v1/admin/compliance/key'); }

  /** Closes the socket and stops reconnecting. Queued sends stay queued. */
  disconnect() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.dropSocket('closed by the app', false);
    this.setState('offline', 'disconnected');
  }

  setState(state, reason) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', { state, reason });
  }

  async open() {
    clearTimeout(this.timer);
    this.setState('connecting', this.attempt ? `retry ${this.attempt}` : 'connecting');
    // With no cursors yet (first login on this device), start at each conversation's end: older messages are
    // history, loaded on demand, not replayed over the socket.
    if (Object.keys(this.cursors).length === 0) {
      try {
        for (const c of await this.get('/v1/conversations')) this.cursors[c.id] = c.lastSeq;
        this.saveCursors();
      } catch (e) {
        return this.scheduleReconnect(e.message);
      }
    }
    let token;
    try { token = await this.accessToken(); } catch (e) { return this.scheduleReconnect(e.message); }
    if (!this.wanted || this.ws) return;
    const url = this.baseURL.replace(/^http/, 'ws') + '/v1/ws';
    const ws = new WebSocket(url);
    this.ws = ws;
    this.inFlight = new Set();
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }));
    ws.onmessage = (e) => { if (this.ws === ws) this.onFrame(JSON.parse(e.data)); };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopPing();
      const reason = e.reason || `closed (${e.code})`;
      // 4001: the login session ended (a refused refresh signs out); 4002: the access token expired (refresh first).
      if (e.code === 4001 || e.code === 4002) {
        this.refresh().then(() => this.scheduleReconnect(reason), () => this.setState('offline', reason));
        return;
      }
      this.scheduleReconnect(reason);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  dropSocket(reason, reconnect = true) {
    const ws = this.ws;
    this.ws = null;
    this.stopPing();
    if (ws) { ws.onclose = null; try { ws.close(1000); } catch { /* already closed */ } }
    if (reconnect) this.scheduleReconnect(reason);
  }

  scheduleReconnect(reason) {
    if (!this.wanted) return this.setState('offline', reason);
    const offline = globalThis.navigator && navigator.onLine === false;
    this.setState(offline ? 'offline' : 'connecting', reason);
    // Offline, the 'online' event reconnects at once; the slow retry covers browsers that never send it.
    const base = offline ? this.maxBackoffSeconds : Math.min(this.maxBackoffSeconds, 0.5 * 2 ** this.attempt);
    const delay = base * 1000 * (0.5 + Math.random() / 2);
    this.attempt++;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }

  reconnectNow(reason) {
    this.attempt = 0;
    if (this.ws) this.dropSocket(reason, false);
    this.open();
  }

  startPing() {
    this.stopPing();
    this.pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (this.awaitingPong) return this.dropSocket('the server stopped answering');
      this.awaitingPong = String(Date.now());
      this.ws.send(JSON.stringify({ type: 'ping', ref: this.awaitingPong }));
    }, this.pingSeconds * 1000);
  }

  stopPing() { clearInterval(this.pingTimer); this.pingTimer = null; this.awaitingPong = null; clearTimeout(this.reauthTimer); }

  /** Sends a fresh access token on the open socket before the one it authenticated with expires (`exp`, seconds). */
  scheduleReauth(ws, exp) {
    clearTimeout(this.reauthTimer);
    if (!exp) return;
    this.reauthTimer = setTimeout(async () => {
      let token;
      try { token = await this.accessToken(); } catch { return; }   // the server closes with 4002; onclose refreshes
      if (this.ws === ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'auth', token }));
    }, Math.max(0, exp * 1000 - Date.now() - 20000));
  }

  write(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === 'online') { this.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  onFrame(f) {
    switch (f.type) {
      case 'ready': {
        const again = this.readyInfo?.session === f.session;   // the answer to a fresh token on this socket
        this.scheduleReauth(this.ws, f.exp);
        if (again) break;
        this.readyInfo = { user: f.user, session: f.session };
        this.ws.send(JSON.stringify({ type: 'sync', cursors: this.cursors, limit: 500 }));
        break;
      }
      case 'msg': {
        const held = this.cursors[f.conv] || 0;
        if (f.seq <= held) break;          // already delivered once: never show twice
        this.cursors[f.conv] = f.seq;
        this.saveCursors();
        delete f.type;
        if (f.sender === this.user?.id) this.settle(f.cid);
        this.emit('message', f);
        break;
      }
      case 'synced':
        if (f.more && f.more.length) {
          this.ws.send(JSON.stringify({ type: 'sync', cursors: this.cursors, limit: 500 }));
          break;
        }
        this.attempt = 0;
        this.setState('online', 'synced');
        this.startPing();
        this.emit('ready', this.readyInfo);
        this.flush();
        break;
      case 'ack':
        this.settle(f.cid);
        this.emit('ack', f);
        break;
      case 'error': {
        const err = new WarblerError(f.code, f.message);
        if (f.cid) {
          const item = this.queue.find((q) => q.cid === f.cid);
          this.inFlight.delete(f.cid);
          if (item && (f.code === 'unavailable' || f.code === 'rate_limited')) {
            setTimeout(() => this.flush(), (f.retryAfter || 1) * 1000);   // same cid: idempotent
          } else if (item) {
            this.queue = this.queue.filter((q) => q.cid !== f.cid);
            this.saveQueue();
            this.emit('sendfailed', { item, error: err });
          } else {
            this.emit('error', err);
          }
        } else {
          // A rejected token (expired, or the account was disabled): refresh; a refused refresh signs out.
          if (f.code === 'unauthorized') this.refresh().catch(() => {});
          // Syncs are rate-limited per connection: while catching up, ask again when the server says.
          if (f.code === 'rate_limited' && this.state !== 'online') {
            const ws = this.ws;
            setTimeout(() => {
              if (this.ws === ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'sync', cursors: this.cursors, limit: 500 }));
            }, (f.retryAfter || 1) * 1000);
          }
          this.emit('error', err);
        }
        break;
      }
      case 'receipt': this.emit('receipt', f); break;
      case 'typing': this.emit('typing', f); break;
      case 'presence': this.emit('presence', f); break;
      case 'draft': this.emit('draft', f); break;
      case 'pong': this.awaitingPong = null; break;
      case 'reconnect': this.dropSocket(f.reason || 'server restarting'); break;
      default: break;
    }
  }

  settle(cid) {
    this.inFlight.delete(cid);
    const before = this.queue.length;
    this.queue = this.queue.filter((q) => q.cid !== cid);
    if (this.queue.length !== before) this.saveQueue();
  }

  /** Writes every queued frame not yet written on this socket, in order. */
  flush() {
    for (const item of this.queue) {
      if (this.inFlight.has(item.cid)) continue;
      if (!this.write(item.frame)) return;
      this.inFlight.add(item.cid);
    }
  }

  enqueue(frame) {
    const item = { cid: frame.cid, conv: frame.conv, frame, queuedAt: Date.now() };
    this.queue.push(item);
    this.saveQueue();
    this.flush();
    return item;
  }

  // ---- Sending --------------------------------------------------------------------------------

  /**
   * Sends text to `conv`. Returns the queue item ({cid, conv, frame}); the `ack` and `message` events follow.
   * Options: `replyTo` (seq of the message quoted), `mentions` ([user ids], members), `mentionAll` (`@all`: group
   * owners and admins only). Mentions are structured: the server never reads them from the text.
   */
  send(conv, text, { replyTo, mentions, mentionAll } = {}) {
    const frame = { type: 'send', cid: newCid(), conv, kind: 'text', text };
    if (replyTo) frame.replyTo = replyTo;
    if (mentions && mentions.length) frame.mentions = [...new Set(mentions)];
    if (mentionAll) frame.mentionAll = true;
    return this.enqueue(frame);
  }

  /** Sends an application-defined JSON payload. */
  sendCustom(conv, data) { return this.enqueue({ type: 'send', cid: newCid(), conv, kind: 'custom', data }); }

  /** Sends an uploaded attachment (see uploadAttachment) with an optional caption. */
  sendAttachment(conv, attachmentId, caption) {
    const frame = { type: 'send', cid: newCid(), conv, kind: 'attachment', attachment: attachmentId };
    if (caption) frame.text = caption;
    return this.enqueue(frame);
  }

  /** Recalls message `seq` (your own within the recall window; group admins any). */
  recall(conv, seq) { return this.enqueue({ type: 'recall', cid: newCid(), conv, seq }); }

  /** Replaces the text of your message `seq`. */
  edit(conv, seq, text) { return this.enqueue({ type: 'edit', cid: newCid(), conv, seq, text }); }

  /** Adds your `emoji` on message `seq`, or takes it back with `remove` (stored as a `reaction` message). */
  react(conv, seq, emoji, remove = false) {
    const frame = { type: 'react', cid: newCid(), conv, seq, emoji };
    if (remove) frame.remove = true;
    return this.enqueue(frame);
  }

  /** Marks everything up to `seq` delivered or read. Not queued: a later receipt supersedes it. */
  receipt(conv, kind, seq) { return this.write({ type: 'receipt', conv, kind, seq }); }

  /** Tells the other members you are (or stopped) typing. Not queued. */
  typing(conv, active) { return this.write({ type: 'typing', conv, active }); }

  /** Queued sends not yet acknowledged (for showing them as pending). */
  pending(conv) { return this.queue.filter((q) => conv === undefined || q.conv === conv); }
}

/**
 * Applies a `reaction` message to the message it targets (returns a new message; others are returned as they
 * are). Adding is idempotent and removing what is absent does nothing, so replaying reactions in seq order over
 * a message read from history gives the server's state.
 */
export function applyReaction(message, event) {
  if (event.kind !== 'reaction' || event.conv !== message.conv || event.target !== message.seq || message.recalled) return message;
  const list = (message.reactions || []).map((r) => ({ emoji: r.emoji, users: [...r.users] }));
  const i = list.findIndex((r) => r.emoji === event.text);
  if (event.data && event.data.op === 'remove') {
    if (i >= 0) {
      list[i].users = list[i].users.filter((u) => u !== event.sender);
      if (!list[i].users.length) list.splice(i, 1);
    }
  } else if (i >= 0) {
    if (!list[i].users.includes(event.sender)) list[i].users.push(event.sender);
  } else {
    list.push({ emoji: event.text, users: [event.sender] });
  }
  // Emoji in a fixed order (by code points, which is the server's UTF-8 byte order), users in the order they reacted.
  const key = (e) => Array.from(e, (c) => c.codePointAt(0));
  list.sort((x, y) => {
    const a = key(x.emoji), b = key(y.emoji);
    for (let k = 0; k < Math.min(a.length, b.length); k++) if (a[k] !== b[k]) return a[k] - b[k];
    return a.length - b.length;
  });
  return { ...message, reactions: list.length ? list : undefined };
}

/** Whether message `m` mentions user `user` (by id or `@all`; never the sender, never once recalled). */
export function mentionsUser(m, user) {
  if (!m || m.sender === user || m.recalled) return false;
  return m.mentionAll === true || (m.mentions || []).includes(user);
}
