#!/usr/bin/env python3
"""One neutral load driver for Warbler and an XMPP server (ejabberd), used by scripts/peer-bench.sh.

Standard library only (asyncio, json, xml.etree's expat pull parser), so it runs on any Debian host and in CI.
The same code drives every server: pairs of users, one of each pair sending to the other; only the framing
differs (Warbler's JSON over WebSocket, docs/protocol.md; XMPP over TCP with XEP-0198 acknowledgements).

    peer_bench.py run --proto warbler --url http://127.0.0.1:8080 --shape T [--pid SERVER_PID]
    peer_bench.py run --proto xmpp --addr 127.0.0.1:5222 --domain localhost --shape L
    peer_bench.py disk DIR          # fdatasync of a 4 KiB write and a one-row SQLite commit (WAL, synchronous=FULL)
    peer_bench.py table RESULTS.jsonl

`run` prints one JSON line. Shapes: T (50 pairs, 32 sends in flight per sender), L (10 pairs, one in flight),
R (50 pairs, each sender 10 msg/s). Every run checks that every acknowledged message was delivered exactly once
(lost = acked but not delivered, duplicates = delivered more than once) and exits 1 when not.
"""
import argparse
import asyncio
import base64
import collections
import hashlib
import json
import multiprocessing
import os
import random
import resource
import socket
import sqlite3
import statistics
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

SHAPES = {
    # name: pairs, window (sends in flight per sender), messages per sender, rate per sender (msg/s, 0: as fast as acked)
    "T": dict(pairs=50, window=32, messages=400, rate=0),
    "L": dict(pairs=10, window=1, messages=1000, rate=0),
    "R": dict(pairs=50, window=1000, messages=100, rate=10),
    # 1,000 sockets chatting slowly: R's 500 msg/s spread over 500 pairs (beside thousands of idle ones: --idle-shapes)
    "C": dict(pairs=500, window=1000, messages=20, rate=1),
}
now = time.monotonic_ns


class Counters:
    """What one worker process measured."""

    def __init__(self):
        self.sent = 0
        self.acked = 0
        self.errors = 0
        self.ack_ms = []
        self.deliver_ms = []
        self.delivered = 0
        self.duplicates = 0
        self.unexpected = 0  # a delivery of a message that was never sent (wrong pair, garbled text)
        self.acked_ids = []  # per pair: bytearray, 1 = acked
        self.seen = []  # per pair: bytearray, deliveries per message (capped at 255)


# --------------------------------------------------------------------------------------------- WebSocket client
class WebSocket:
    """A minimal RFC 6455 client over asyncio streams: text frames out (masked), text frames in."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.buf = bytearray()
        self.close_code = None  # the server's close frame's code, once it sent one

    @classmethod
    async def connect(cls, host, port, path, source=None, tls=None):
        # A source address of 127.0.0.x gets a port range of its own (many thousands of sockets to one server).
        # tls: an ssl.SSLContext for wss:// (a cluster member's HAProxy), verified against the cluster's CA.
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None,
                                                       ssl=tls, server_hostname=host if tls else None)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise RuntimeError(f"WebSocket upgrade refused: {status.decode(errors='replace')}")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if accept not in head:
            raise RuntimeError("WebSocket upgrade: wrong Sec-WebSocket-Accept")
        return cls(reader, writer)

    def frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        keystream = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(n, "little")
        return head + mask + masked

    def send_text(self, text):
        self.writer.write(self.frame(0x1, text.encode()))

    async def messages(self):
        """Yields lists of text messages, one list per read from the socket."""
        buf = self.buf
        fragments = bytearray()
        while True:
            chunk = await self.reader.read(262144)
            if not chunk:
                return
            buf += chunk
            out = []
            while True:
                if len(buf) < 2:
                    break
                b0, b1 = buf[0], buf[1]
                n = b1 & 0x7F
                pos = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n = struct.unpack_from("!H", buf, 2)[0]
                    pos = 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n = struct.unpack_from("!Q", buf, 2)[0]
                    pos = 10
                if b1 & 0x80:
                    raise RuntimeError("server sent a masked frame")
                if len(buf) < pos + n:
                    break
                payload = bytes(buf[pos:pos + n])
                del buf[:pos + n]
                opcode = b0 & 0x0F
                if opcode == 0x9:  # ping
                    self.writer.write(self.frame(0xA, payload))
                elif opcode == 0x8:  # close
                    self.close_code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                    return
                elif opcode in (0x1, 0x0):
                    fragments += payload
                    if b0 & 0x80:
                        out.append(fragments.decode())
                        fragments = bytearray()
            if out:
                yield out


# --------------------------------------------------------------------------------------------- Warbler
def http_json(base, method, path, body=None, token=None, tls=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30, context=tls) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        data = e.read()
        try:
            return e.code, json.loads(data)
        except ValueError:
            return e.code, {"raw": data.decode(errors="replace")}


def warbler_account(base, name, password, tls=None, admin_token=None):
    """A new account's id and access token: registered by the user, or (admin_token) created by an administrator
    where registration is closed (a cluster's default) and then logged in."""
    def call(path, token=None):
        for attempt in range(30):  # 503: every bcrypt slot of the server is busy; come back shortly
            status, body = http_json(base, "POST", path, {"username": name, "password": password}, token=token, tls=tls)
            if status != 503:
                return status, body
            time.sleep(min(0.1 * (attempt + 1), 1))
        return status, body

    status, body = call("/v1/admin/users", admin_token) if admin_token else call("/v1/auth/register")
    if status == 409 or admin_token and status in (200, 201):
        status, body = call("/v1/auth/login")
    if status not in (200, 201):
        raise RuntimeError(f"account {name}: HTTP {status} {body}")
    return body["user"]["id"], body["accessToken"], body.get("refreshToken")


class WarblerConn:
    """One user's WebSocket: auth, sync from the conversation's end, then send/receive."""

    def __init__(self, base, token, conv, last_seq):
        self.base, self.token, self.conv, self.last_seq = base, token, conv, last_seq
        self.on_ack = None  # (cid) -> None
        self.on_text = None  # (text) -> None
        self.on_error = None

    async def open(self):
        u = urllib.parse.urlsplit(self.base)
        self.ws = await WebSocket.connect(u.hostname, u.port or 80, "/v1/ws")
        self.stream = self.ws.messages()
        self.ws.send_text(json.dumps({"type": "auth", "token": self.token}))
        await self.expect("ready")
        self.ws.send_text(json.dumps({"type": "sync", "cursors": {str(self.conv): self.last_seq}}))
        await self.expect("synced")

    async def expect(self, kind):
        while True:
            batch = await self.stream.__anext__()
            for text in batch:
                f = json.loads(text)
                if f.get("type") == kind:
                    return f
                if f.get("type") == "error":
                    raise RuntimeError(f"waiting for {kind}: {f}")

    def send(self, cid, text):
        self.ws.send_text(json.dumps({"type": "send", "cid": cid, "conv": self.conv, "kind": "text", "text": text}))

    async def pump(self):
        loads = json.loads
        async for batch in self.stream:
            for raw in batch:
                f = loads(raw)
                t = f.get("type")
                if t == "msg":
                    if self.on_text and f.get("text") is not None:
                        self.on_text(f["text"])
                elif t == "ack":
                    if self.on_ack:
                        self.on_ack(f["cid"])
                elif t == "error":
                    if self.on_error:
                        self.on_error(f.get("cid"), f)

    @property
    def writer(self):
        return self.ws.writer

    async def close(self):
        self.ws.writer.close()


async def warbler_setup(args, first, count, tag):
    base = args.url.rstrip("/")
    pairs = []
    for i in range(first, first + count):
        _, atok, _ = await asyncio.to_thread(warbler_account, base, f"{tag}a{i}", args.password)
        bid, btok, _ = await asyncio.to_thread(warbler_account, base, f"{tag}b{i}", args.password)
        status, conv = await asyncio.to_thread(http_json, base, "POST", "/v1/conversations/direct", {"userId": bid}, atok)
        if status not in (200, 201):
            raise RuntimeError(f"direct conversation: HTTP {status} {conv}")
        last = conv.get("lastSeq", 0)
        sender = WarblerConn(base, atok, conv["id"], last)
        receiver = WarblerConn(base, btok, conv["id"], last)
        await sender.open()
        await receiver.open()
        pairs.append((sender, receiver))
    return pairs


# --------------------------------------------------------------------------------------------- XMPP
STREAM_OPEN = ("<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
NS_SM = "urn:xmpp:sm:3"


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


class XMPPConn:
    """One XMPP client session over TCP: in-band registration, SASL PLAIN, bind, XEP-0198 acks for sends."""

    def __init__(self, host, port, domain, user, password, peer, sender):
        self.host, self.port, self.domain, self.user, self.password = host, port, domain, user, password
        self.peer, self.sender = peer, sender
        self.on_ack = None  # (cid) -> None
        self.on_text = None
        self.on_error = None
        self.unacked = collections.deque()  # (stanza number, cid) of sends not yet covered by <a h/>
        self.out_stanzas = 0  # stanzas sent since <enable/>
        self.in_stanzas = 0  # stanzas received since <enabled/>
        self.sm = False

    def new_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0

    def write(self, s):
        self.writer.write(s.encode())

    async def stanzas(self):
        """Yields lists of complete top-level elements (children of <stream:stream>)."""
        while True:
            chunk = await self.reader.read(262144)
            if not chunk:
                return
            self.parser.feed(chunk)
            out = []
            for ev, el in self.parser.read_events():
                if ev == "start":
                    self.depth += 1
                    if self.depth == 1:
                        if el.tag != "{http://etherx.jabber.org/streams}stream":
                            raise RuntimeError(f"unexpected stream root {el.tag}")
                        self.root = el
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        out.append(el)
                        self.root.clear()  # the pull parser keeps every finished stanza under the root otherwise
                    elif self.depth == 0:
                        return
            if out:
                yield out

    async def next_stanza(self):
        while not self.pending:
            self.pending.extend(await self.stream.__anext__())
        return self.pending.popleft()

    async def restart_stream(self):
        self.new_parser()
        self.stream = self.stanzas()
        self.pending = collections.deque()
        self.write(STREAM_OPEN.format(domain=self.domain))
        features = await self.next_stanza()
        if not features.tag.endswith("}features"):
            raise RuntimeError(f"expected stream features, got {features.tag}")
        return features

    async def iq(self, body, ident):
        self.write(f"<iq type='set' id='{ident}'>{body}</iq>")
        while True:
            st = await self.next_stanza()
            if st.tag == "{jabber:client}iq" and st.get("id") == ident:
                return st

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self.restart_stream()
        reply = await self.iq(f"<query xmlns='jabber:iq:register'><username>{self.user}</username>"
                              f"<password>{xml_escape(self.password)}</password></query>", "reg")
        if reply.get("type") != "result" and "conflict" not in ET.tostring(reply, encoding="unicode"):
            raise RuntimeError(f"XMPP registration of {self.user}: {ET.tostring(reply, encoding='unicode')}")
        plain = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        self.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>")
        st = await self.next_stanza()
        if not st.tag.endswith("}success"):
            raise RuntimeError(f"XMPP auth of {self.user}: {ET.tostring(st, encoding='unicode')}")
        await self.restart_stream()
        reply = await self.iq("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind>", "bind")
        if reply.get("type") != "result":
            raise RuntimeError(f"XMPP bind: {ET.tostring(reply, encoding='unicode')}")
        if self.sender:
            self.write(f"<enable xmlns='{NS_SM}'/>")
            st = await self.next_stanza()
            if st.tag != f"{{{NS_SM}}}enabled":
                raise RuntimeError(f"XMPP stream management refused: {ET.tostring(st, encoding='unicode')}")
            self.sm = True
        # Available, so that messages to the bare JID reach this session.
        self.write("<presence/>")
        self.out_stanzas += 1 if self.sm else 0

    def send(self, cid, text):
        self.out_stanzas += 1
        self.unacked.append((self.out_stanzas, cid))
        self.write(f"<message to='{self.peer}@{self.domain}' type='chat' id='{cid}'><body>{text}</body></message>"
                   f"<r xmlns='{NS_SM}'/>")

    async def pump(self):
        for st in list(self.pending):
            self.handle(st)
        self.pending.clear()
        async for batch in self.stream:
            for st in batch:
                self.handle(st)

    def handle(self, st):
        tag = st.tag
        if tag == "{jabber:client}message":
            self.in_stanzas += 1
            if st.get("type") == "error":
                # The stream-management ack still covers the send, so the error only counts.
                if self.on_error:
                    self.on_error(None, ET.tostring(st, encoding="unicode"))
                return
            body = st.find("{jabber:client}body")
            if body is not None and self.on_text:
                self.on_text(body.text)
        elif tag == f"{{{NS_SM}}}a":
            h = int(st.get("h"))
            while self.unacked and self.unacked[0][0] <= h:
                _, cid = self.unacked.popleft()
                if self.on_ack:
                    self.on_ack(cid)
        elif tag == f"{{{NS_SM}}}r":
            self.write(f"<a xmlns='{NS_SM}' h='{self.in_stanzas}'/>")
        elif tag in ("{jabber:client}presence", "{jabber:client}iq"):
            self.in_stanzas += 1

    async def close(self):
        try:
            self.write("</stream:stream>")
        finally:
            self.writer.close()


async def xmpp_setup(args, first, count, tag):
    host, port = args.addr.rsplit(":", 1)
    pairs = []
    for i in range(first, first + count):
        a, b = f"{tag}a{i}", f"{tag}b{i}"
        sender = XMPPConn(host, int(port), args.domain, a, args.password, b, True)
        receiver = XMPPConn(host, int(port), args.domain, b, args.password, a, False)
        await receiver.open()
        await sender.open()
        pairs.append((sender, receiver))
    return pairs


# --------------------------------------------------------------------------------------------- the run
async def drive(args, shape, worker, first, count, barrier, tag):
    setup = warbler_setup if args.proto == "warbler" else xmpp_setup
    pairs = await setup(args, first, count, tag)
    n, window, rate = shape["messages"], shape["window"], shape["rate"]
    c = Counters()
    c.acked_ids = [bytearray(n) for _ in pairs]
    c.seen = [bytearray(n) for _ in pairs]
    prefix = f"{tag}:"
    done = asyncio.Event()
    outstanding = [0]
    all_sent = [False]

    def check_done():
        if all_sent[0] and outstanding[0] == 0 and c.delivered >= c.acked:
            done.set()
    sent_at = [[0] * n for _ in pairs]

    def receiver_handler(p):
        seen = c.seen[p]

        def on_text(text):
            t = now()
            if not text.startswith(prefix):
                c.unexpected += 1
                return
            try:
                _, pp, i, t0 = text.split(":")
                pp, i, t0 = int(pp), int(i), int(t0)
            except ValueError:
                c.unexpected += 1
                return
            if pp != first + p or not 0 <= i < n:
                c.unexpected += 1
                return
            if seen[i]:
                c.duplicates += 1
            else:
                c.delivered += 1
                c.deliver_ms.append((t - t0) / 1e6)
            seen[i] = min(255, seen[i] + 1)
            check_done()
        return on_text

    def sender_handlers(p, slots):
        acked = c.acked_ids[p]
        times = sent_at[p]

        def on_ack(cid):
            t = now()
            i = int(cid.rsplit("-", 1)[1])
            if acked[i]:
                return  # an ack for the same cid twice (a server's duplicate answer) is not a second message
            acked[i] = 1
            c.acked += 1
            c.ack_ms.append((t - times[i]) / 1e6)
            outstanding[0] -= 1
            slots.release()
            check_done()

        def on_error(cid, detail):
            c.errors += 1
            if c.errors <= 3:
                print(f"worker {worker}: error {detail}", file=sys.stderr)
            if cid:  # no ack follows this error
                outstanding[0] -= 1
                slots.release()
                check_done()
        return on_ack, on_error

    pumps = []
    senders = []
    for p, (s, r) in enumerate(pairs):
        slots = asyncio.Semaphore(window)
        s.on_ack, s.on_error = sender_handlers(p, slots)
        r.on_text = receiver_handler(p)
        # The sender's own connection gets its copy of each message too (Warbler): not a delivery to the peer.
        s.on_text = None
        pumps.append(asyncio.ensure_future(s.pump()))
        pumps.append(asyncio.ensure_future(r.pump()))
        senders.append((p, s, slots))

    async def sender(p, s, slots, t_start):
        times = sent_at[p]
        phase = random.random() / rate if rate else 0
        deadline = t_start + int(args.max_seconds * 1e9)
        for i in range(n):
            if now() > deadline:
                break  # a slow server: stop sending, and measure what was sent
            if rate:
                delay = (t_start + int((phase + i / rate) * 1e9) - now()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
            await slots.acquire()
            t0 = now()
            times[i] = t0
            outstanding[0] += 1
            c.sent += 1
            s.send(f"{tag}-{first + p}-{i}", f"{tag}:{first + p}:{i}:{t0}")
            if s.writer.transport.get_write_buffer_size() > 1 << 20:
                await s.writer.drain()

    await asyncio.to_thread(barrier.wait)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = now()
    tasks = [asyncio.ensure_future(sender(p, s, slots, t_start)) for p, s, slots in senders]
    await asyncio.gather(*tasks)
    all_sent[0] = True
    check_done()
    # Every send is out; wait until each ack arrived and each acked message was delivered (bounded).
    try:
        await asyncio.wait_for(done.wait(), timeout=args.timeout)
    except asyncio.TimeoutError:
        pass
    t_end = now()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for task in pumps:
        task.cancel()
    for s, r in pairs:
        await s.close()
        await r.close()
    lost = sum(1 for p in range(len(pairs)) for i in range(n) if c.acked_ids[p][i] and not c.seen[p][i])
    return dict(sent=c.sent, acked=c.acked, delivered=c.delivered, duplicates=c.duplicates, lost=lost, errors=c.errors,
                unexpected=c.unexpected, ack_ms=c.ack_ms, deliver_ms=c.deliver_ms, t_start=t_start, t_end=t_end,
                driver_cpu=(cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime))


def worker_main(args, shape, worker, first, count, barrier, tag, queue):
    try:
        queue.put(asyncio.run(drive(args, shape, worker, first, count, barrier, tag)))
    except BaseException as e:  # reported, and the parent fails the run
        barrier.abort()
        queue.put({"failure": f"worker {worker}: {type(e).__name__}: {e}"})


def proc_cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


COUNTED = {"syscalls:sys_enter_write": "write", "syscalls:sys_enter_writev": "writev",
           "syscalls:sys_enter_sendmsg": "sendmsg", "syscalls:sys_enter_futex": "futex",
           "context-switches": "context_switches"}


def start_counting(pid):
    """`perf stat` on the server for the run: its socket writes, futex calls and context switches per message are
    what the hops between threads cost, and they do not depend on how loaded the machine is."""
    import shutil
    import subprocess
    if not shutil.which("perf"):
        print("perf is not installed (apt-get install linux-perf): no syscall counts", file=sys.stderr)
        return None
    return subprocess.Popen(["perf", "stat", "-x", ",", "-p", str(pid)] + [a for e in COUNTED for a in ("-e", e)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop_counting(proc):
    import signal
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    counts = {}
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2] in COUNTED and parts[0].strip().isdigit():
            counts[COUNTED[parts[2]]] = int(parts[0])
    return counts


def pct(samples, q):
    if not samples:
        return 0.0
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))]


def cmd_run(args):
    shape = dict(SHAPES[args.shape])
    for k in ("pairs", "window", "messages", "rate"):
        if getattr(args, k) is not None:
            shape[k] = getattr(args, k)
    procs = max(1, min(args.procs, shape["pairs"]))
    tag = args.tag or f"pb{os.getpid() % 100000}x{random.randrange(1000)}"
    barrier = multiprocessing.Barrier(procs + 1)
    queue = multiprocessing.Queue()
    workers = []
    per, extra = divmod(shape["pairs"], procs)
    first = 0
    for w in range(procs):
        count = per + (1 if w < extra else 0)
        p = multiprocessing.Process(target=worker_main, args=(args, shape, w, first, count, barrier, tag, queue))
        p.start()
        workers.append(p)
        first += count
    try:
        barrier.wait(timeout=600)
    except threading.BrokenBarrierError:
        pass  # a worker failed its setup; its failure is in the queue
    cpu0 = proc_cpu_seconds(args.pid) if args.pid else None
    counting = start_counting(args.pid) if args.pid and args.count_syscalls else None
    results = [queue.get() for _ in workers]
    cpu1 = proc_cpu_seconds(args.pid) if args.pid else None
    counts = stop_counting(counting) if counting else {}
    for p in workers:
        p.join()
    failures = [r["failure"] for r in results if "failure" in r]
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(2)
    total = lambda k: sum(r[k] for r in results)  # noqa: E731
    acks = [x for r in results for x in r["ack_ms"]]
    delivers = [x for r in results for x in r["deliver_ms"]]
    seconds = (max(r["t_end"] for r in results) - min(r["t_start"] for r in results)) / 1e9
    delivered = total("delivered")
    out = dict(label=args.label or args.proto, proto=args.proto, shape=args.shape, pairs=shape["pairs"],
               window=shape["window"], rate=shape["rate"], procs=procs,
               sent=total("sent"), acked=total("acked"), delivered=delivered, lost=total("lost"),
               duplicates=total("duplicates"), errors=total("errors"), unexpected=total("unexpected"),
               seconds=round(seconds, 3), delivered_per_s=round(delivered / seconds, 1) if seconds else 0,
               ack_p50=round(pct(acks, .5), 2), ack_p99=round(pct(acks, .99), 2),
               p50=round(pct(delivers, .5), 2), p90=round(pct(delivers, .9), 2), p99=round(pct(delivers, .99), 2),
               driver_us_per_msg=round(total("driver_cpu") / delivered * 1e6, 1) if delivered else None)
    if cpu0 is not None:
        out["server_cpu_pct"] = round((cpu1 - cpu0) / seconds * 100, 1) if seconds else None
        out["server_us_per_msg"] = round((cpu1 - cpu0) / delivered * 1e6, 1) if delivered else None
    for name, n in counts.items():
        out[f"server_{name}_per_msg"] = round(n / delivered, 2) if delivered else None
    print(json.dumps(out), flush=True)
    ok = (out["sent"] == out["acked"] == out["delivered"] and out["lost"] == 0 and out["duplicates"] == 0
          and out["errors"] == 0 and out["unexpected"] == 0)
    if not ok:
        print(f"CORRECTNESS FAILED: {args.label or args.proto} {args.shape}: sent={out['sent']} acked={out['acked']} "
              f"delivered={out['delivered']} lost={out['lost']} duplicates={out['duplicates']} errors={out['errors']} "
              f"unexpected={out['unexpected']}", file=sys.stderr)
        sys.exit(1)


# --------------------------------------------------------------------------------------------- idle connections
def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cmd_idle(args):
    """Memory per authenticated idle WebSocket: the server's RSS growth over --connections sockets (Warbler).

    Also the cluster's capacity check (scripts/e2e-cluster.sh CAPACITY=N): sockets spread over several members'
    wss:// addresses (--url A,B,…, --ca), from many source addresses (--source-addresses), with accounts an
    administrator creates (--admin); without --pid the caller reads the servers' memory itself."""
    import resource
    import ssl
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bases = [b.rstrip("/") for b in args.url.split(",")]
    tls = ssl.create_default_context(cafile=args.ca) if args.ca else None
    admin_token = None
    if args.admin:
        with open(args.admin_password_file) as f:
            admin_password = f.read().strip()
        status, body = http_json(bases[0], "POST", "/v1/auth/login", {"username": args.admin, "password": admin_password}, tls=tls)
        if status != 200:
            raise SystemExit(f"admin login as {args.admin}: HTTP {status} {body}")
        admin_token = body["accessToken"]
    sources = args.source_addresses.split(",") if args.source_addresses else \
        [f"127.0.0.{2 + i}" for i in range(args.sources)] if args.sources > 1 else [None]
    tag = f"idle{os.getpid() % 100000}x{random.randrange(1000)}"
    users = (args.connections + args.per_user - 1) // args.per_user
    if tls:
        # asyncio gives every TLS connection a 256 KiB read buffer (SSLProtocol.max_size); a TLS record is at most
        # 16 KiB, and thousands of idle sockets would otherwise cost the driver gigabytes.
        import asyncio.sslproto as sslproto
        sslproto.SSLProtocol.max_size = 32 * 1024
    # Per account: [access token, refresh token, when obtained]. Creating them costs two bcrypts each (minutes for
    # thousands), and an access token lives auth.access_ttl_seconds (15 min): a held socket whose token expires is
    # closed (4002) unless a fresh one is sent on it, as the SDK does; so tokens are refreshed below while held.
    accounts = []
    for i in range(users):
        _, access, refresh = warbler_account(bases[i % len(bases)], f"{tag}u{i}", args.password, tls=tls, admin_token=admin_token)
        accounts.append([access, refresh, time.monotonic()])
    read_rss = (lambda: rss_kb(args.pid)) if args.pid else (lambda: None)

    async def main():
        socks, readers, failures = [], [], []
        by_account = {}
        renewed = [0]
        gate = asyncio.Semaphore(64)

        async def keep_tokens_fresh():
            # Every account's access token renewed once it is older than --refresh-after, and sent on its open sockets.
            while True:
                await asyncio.sleep(min(10, args.refresh_after / 2))
                for k, acc in enumerate(accounts):
                    if time.monotonic() - acc[2] < args.refresh_after:
                        continue
                    status, body = await asyncio.to_thread(http_json, bases[k % len(bases)], "POST", "/v1/auth/refresh",
                                                           {"refreshToken": acc[1]}, None, tls)
                    if status != 200:
                        failures.append(f"account {k}: token refresh HTTP {status} {body}")
                        continue
                    acc[:] = [body["accessToken"], body["refreshToken"], time.monotonic()]
                    renewed[0] += 1
                    for ws in by_account.get(k, []):
                        ws.send_text(json.dumps({"type": "auth", "token": acc[0]}))

        refresher = asyncio.create_task(keep_tokens_fresh())

        async def answer(stream):
            try:
                async for _ in stream:
                    pass
            except Exception:  # noqa: BLE001 - a socket the server closed: counted below
                pass

        async def one(i):
            async with gate:
                u = urllib.parse.urlsplit(bases[i % len(bases)])
                try:
                    ws = await WebSocket.connect(u.hostname, u.port or (443 if u.scheme == "https" else 80), "/v1/ws",
                                                 source=sources[i % len(sources)], tls=tls)
                    stream = ws.messages()
                    token = accounts[i // args.per_user][0]
                    ws.send_text(json.dumps({"type": "auth", "token": token}))
                    while True:
                        batch = await stream.__anext__()
                        if any(json.loads(t).get("type") == "ready" for t in batch):
                            break
                    socks.append(ws)
                    by_account.setdefault(i // args.per_user, []).append(ws)
                    if accounts[i // args.per_user][0] != token:
                        # Renewed while this socket was opening (after its auth went out): it gets the new one too.
                        ws.send_text(json.dumps({"type": "auth", "token": accounts[i // args.per_user][0]}))
                    # Read from now on: the server's pings are answered while the rest open (minutes, in a cluster).
                    readers.append(asyncio.create_task(answer(stream)))
                except (OSError, RuntimeError, StopAsyncIteration, asyncio.IncompleteReadError) as e:
                    failures.append(f"socket {i} to {u.netloc}: {e!r}")

        async def open_range(a, b):
            await asyncio.gather(*(one(i) for i in range(a, b)))
            if failures:
                print(json.dumps(dict(label=args.label or "warbler", failed=len(failures), first=failures[:3])), flush=True)
                raise SystemExit(1)

        # The first sockets warm the server up (thread pools, caches, allocator arenas); the growth is measured after.
        warm = min(args.warm, args.connections // 10)
        await open_range(0, warm)
        await asyncio.sleep(args.settle)
        rss0 = read_rss()
        await open_range(warm, args.connections)
        await asyncio.sleep(args.settle)
        rss1 = read_rss()
        n = args.connections - warm
        out = dict(label=args.label or "warbler", connections=args.connections, measured=n, rss_before_kb=rss0,
                   rss_after_kb=rss1, kb_per_connection=round((rss1 - rss0) / n, 2) if n and args.pid else None)
        print(json.dumps(out), flush=True)
        if args.hold_file:
            # Keep every socket open (answering the server's pings) until the file is removed; meanwhile others
            # chat (peer-bench.sh --idle-shapes). The RSS then, per socket, is printed at the end.
            open(args.hold_file + ".ready", "w").close()
            while os.path.exists(args.hold_file):
                await asyncio.sleep(0.5)
            closed = sum(1 for t in readers if t.done())
            codes = collections.Counter(str(ws.close_code) for ws, t in zip(socks, readers) if t.done())
            if failures:
                print(json.dumps(dict(label=out["label"], failed=len(failures), first=failures[:3])), flush=True)
            rss2 = read_rss()
            print(json.dumps(dict(label=out["label"], held=len(socks), closed_meanwhile=closed, close_codes=codes, tokens_renewed=renewed[0], rss_end_kb=rss2,
                                  kb_per_connection_end=round((rss2 - rss0) / n, 2) if n and args.pid else None)), flush=True)
        refresher.cancel()
        for t in readers:
            t.cancel()
        for ws in socks:
            ws.writer.close()
        if failures:
            raise SystemExit(1)

    asyncio.run(main())


def cmd_idle_summary(args):
    rows = [json.loads(line) for line in open(args.results) if line.startswith("{")]
    for lab in dict.fromkeys(r["label"] for r in rows):
        v = [r["kb_per_connection"] for r in rows if r["label"] == lab and "kb_per_connection" in r]
        print(f"{lab}: RSS growth per authenticated idle WebSocket, median of {len(v)}: {statistics.median(v):.1f} KB ({v})")
        held = [r for r in rows if r["label"] == lab and "kb_per_connection_end" in r]
        if held:
            print(f"{lab}: the same after the shapes ran beside them: {[r['kb_per_connection_end'] for r in held]} KB; "
                  f"sockets the server closed meanwhile: {[r['closed_meanwhile'] for r in held]}")


# --------------------------------------------------------------------------------------------- disk
def cmd_disk(args):
    """The durable part of a message's latency on this disk: fdatasync of a 4 KiB write, a one-row SQLite commit."""
    path = os.path.join(args.dir, "fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    block = os.urandom(4096)
    syncs = []
    try:
        for i in range(args.n):
            os.pwrite(fd, block, (i % 256) * 4096)
            t0 = now()
            os.fdatasync(fd)
            syncs.append((now() - t0) / 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    db = os.path.join(args.dir, "commit-probe.db")
    con = sqlite3.connect(db, isolation_level=None)
    commits = []
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, body TEXT)")
        for i in range(args.n):
            t0 = now()
            con.execute("BEGIN")
            con.execute("INSERT INTO m (body) VALUES (?)", (f"message {i}",))
            con.execute("COMMIT")
            commits.append((now() - t0) / 1e6)
    finally:
        con.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
    print(json.dumps(dict(label="disk", fdatasync_p50=round(pct(syncs, .5), 3), fdatasync_p99=round(pct(syncs, .99), 3),
                          sqlite_commit_p50=round(pct(commits, .5), 3), sqlite_commit_p99=round(pct(commits, .99), 3))))


# --------------------------------------------------------------------------------------------- table
def cmd_table(args):
    rows = [json.loads(line) for line in open(args.results) if line.strip().startswith("{")]
    disk = [r for r in rows if r.get("label") == "disk"]
    runs = [r for r in rows if r.get("label") != "disk"]
    labels = list(dict.fromkeys(r["label"] for r in runs))
    shapes = [s for s in "TLRC" if any(r["shape"] == s for r in runs)]
    base = args.base or labels[0]

    def med(label, shape, key):
        vals = [r[key] for r in runs if r["label"] == label and r["shape"] == shape and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def rounds(label, shape):
        return sum(1 for r in runs if r["label"] == label and r["shape"] == shape)

    def fmt(v, digits=1):
        if v is None:
            return "–"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}f}"

    print(f"medians of each server's rounds; ratios are {base} ÷ the column's server (>1: {base} faster)")
    print()
    print("| shape | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for s in shapes:
        cells = []
        for lab in labels:
            rate, p50, p99 = med(lab, s, "delivered_per_s"), med(lab, s, "p50"), med(lab, s, "p99")
            cell = f"{fmt(rate)} msg/s, {fmt(p50, 2)} / {fmt(p99, 2)} ms"
            if lab != base and rate and med(base, s, "delivered_per_s"):
                r_rate = med(base, s, "delivered_per_s") / rate
                r_p50 = p50 / med(base, s, "p50") if med(base, s, "p50") else None
                cell += f" ({base} ×{r_rate:.2f} msg/s, ×{r_p50:.2f} faster p50)" if r_p50 else ""
            cell += f" [n={rounds(lab, s)}]"
            cells.append(cell)
        print(f"| {s} | " + " | ".join(cells) + " |")
    if "T" in shapes:
        cells = []
        for lab in labels:
            cpu, us = med(lab, "T", "server_cpu_pct"), med(lab, "T", "server_us_per_msg")
            cells.append(f"{fmt(cpu)} %, {fmt(us)} µs/msg" if cpu is not None else "–")
        print("| server CPU at T | " + " | ".join(cells) + " |")
        cells = [fmt(med(lab, "T", "driver_us_per_msg")) + " µs/msg" for lab in labels]
        print("| driver CPU at T | " + " | ".join(cells) + " |")
    for s in shapes:
        if not any(r.get("server_futex_per_msg") is not None for r in runs if r["shape"] == s):
            continue
        cells = []
        for lab in labels:
            w = sum(med(lab, s, f"server_{k}_per_msg") or 0 for k in ("write", "writev", "sendmsg"))
            cells.append(f"{w:.2f} writes, {fmt(med(lab, s, 'server_futex_per_msg'), 2)} futex, "
                         f"{fmt(med(lab, s, 'server_context_switches_per_msg'), 2)} switches")
        print(f"| server per message at {s} | " + " | ".join(cells) + " |")
    bad = [r for r in runs if not (r["sent"] == r["acked"] == r["delivered"] and r["lost"] == 0 and r["duplicates"] == 0)]
    print()
    print(f"correctness: {len(runs) - len(bad)} of {len(runs)} runs with sent = acked = delivered, lost 0, duplicates 0")
    for r in bad:
        print(f"  FAILED {r['label']} {r['shape']}: sent={r['sent']} acked={r['acked']} delivered={r['delivered']} "
              f"lost={r['lost']} duplicates={r['duplicates']}")
    for d in disk:
        print(f"disk, same sitting: fdatasync of 4 KiB p50 {d['fdatasync_p50']} / p99 {d['fdatasync_p99']} ms; "
              f"one-row SQLite commit (WAL, synchronous=FULL) p50 {d['sqlite_commit_p50']} / p99 {d['sqlite_commit_p99']} ms")
    if bad:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="drive one server in one shape; prints one JSON line")
    r.add_argument("--proto", choices=["warbler", "xmpp"], required=True)
    r.add_argument("--url", help="Warbler's base URL (http://127.0.0.1:PORT)")
    r.add_argument("--addr", help="XMPP server HOST:PORT")
    r.add_argument("--domain", default="localhost", help="XMPP domain")
    r.add_argument("--shape", choices=sorted(SHAPES), required=True)
    r.add_argument("--pairs", type=int)
    r.add_argument("--window", type=int)
    r.add_argument("--messages", type=int, help="messages per sender")
    r.add_argument("--rate", type=float, help="messages per second per sender (0: as fast as the window allows)")
    r.add_argument("--procs", type=int, default=2, help="driver processes (pairs are split between them)")
    r.add_argument("--password", default="bench-password-1")
    r.add_argument("--tag", help="account name prefix (default: random per run, so runs never share accounts)")
    r.add_argument("--label", help="the server's name in the table")
    r.add_argument("--pid", type=int, help="the server's process, to measure its CPU during the run")
    r.add_argument("--timeout", type=float, default=60, help="seconds to wait for outstanding acks and deliveries")
    r.add_argument("--count-syscalls", action="store_true",
                   help="with --pid: count the server's writes, futex calls and context switches (perf stat)")
    r.add_argument("--max-seconds", type=float, default=30, help="stop sending after this long (a slow server)")
    d = sub.add_parser("disk", help="fdatasync and one-row SQLite commit latency in DIR")
    d.add_argument("dir")
    d.add_argument("-n", type=int, default=500)
    i = sub.add_parser("idle", help="the server's RSS growth per authenticated idle WebSocket (Warbler)")
    i.add_argument("--url", required=True, help="the server's base URL, or several comma-separated (sockets spread over them)")
    i.add_argument("--pid", type=int, help="the server's process, whose RSS is read (without it: not read)")
    i.add_argument("--ca", help="CA file for https:// URLs (a cluster's ca.crt)")
    i.add_argument("--admin", help="an administrator who creates the accounts (registration closed)")
    i.add_argument("--admin-password-file")
    i.add_argument("--refresh-after", type=float, default=600,
                   help="renew an account's access token (and send it on its sockets) once it is this many seconds old")
    i.add_argument("--connections", type=int, default=5000)
    i.add_argument("--per-user", type=int, default=30, help="sockets per account (the server's limit is 32)")
    i.add_argument("--warm", type=int, default=500, help="sockets opened before the baseline")
    i.add_argument("--settle", type=float, default=3, help="seconds to wait before each RSS reading")
    i.add_argument("--password", default="bench-password-1")
    i.add_argument("--label")
    i.add_argument("--sources", type=int, default=1,
                   help="spread the sockets over this many source addresses 127.0.0.2, .3, … (more than ~28,000 sockets)")
    i.add_argument("--source-addresses", help="comma-separated source addresses to spread the sockets over (instead of --sources)")
    i.add_argument("--hold-file", help="after measuring, keep the sockets open until this file is removed "
                   "(FILE.ready is created when they are all open)")
    s = sub.add_parser("idle-summary", help="the median RSS growth per idle socket from idle JSON lines")
    s.add_argument("results")
    t = sub.add_parser("table", help="median table with ratios from run/disk JSON lines")
    t.add_argument("results")
    t.add_argument("--base", help="the label the ratios compare against (default: the first)")
    args = ap.parse_args()
    if args.cmd == "run":
        if args.proto == "warbler" and not args.url or args.proto == "xmpp" and not args.addr:
            ap.error("--url is needed for warbler, --addr for xmpp")
        cmd_run(args)
    elif args.cmd == "disk":
        cmd_disk(args)
    elif args.cmd == "idle":
        cmd_idle(args)
    elif args.cmd == "idle-summary":
        cmd_idle_summary(args)
    else:
        cmd_table(args)


if __name__ == "__main__":
    main()
