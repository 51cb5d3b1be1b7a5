"""The Warbler web client and admin console in a real browser (headless chromium through chromedriver).

Run by scripts/browser-test.sh, which starts `warbler server` and sets:
WARBLER_URL, WARBLER_ADMIN_USER, WARBLER_ADMIN_PASSWORD, WARBLER_ARTIFACTS, CHROMIUM, CHROMEDRIVER.

The tests run in order (test_01 … test_09) and share the browser sessions: each step builds on the previous one,
as a person using two browsers would.
"""
import base64
import http.server
import threading
import json
import os
import struct
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import zlib

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["WARBLER_URL"]
ADMIN = os.environ["WARBLER_ADMIN_USER"]
ADMIN_PASSWORD = os.environ["WARBLER_ADMIN_PASSWORD"]
ARTIFACTS = os.environ.get("WARBLER_ARTIFACTS", ".artifacts/browser")
WAIT = 20


def api(method, path, body=None, token=None):
    """The REST API from Python (user setup through the admin API)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return json.loads(text) if text else None


def png(width, height, rgb):
    """A small solid-colour PNG, written without any imaging library."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def browser(width=1280, height=800):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_window_size(width, height)
    return d


class Page:
    """One person's browser on the chat page."""

    def __init__(self, name, width=1280, height=800):
        self.name = name
        self.d = browser(width, height)

    def wait(self, what, cond, timeout=WAIT):
        try:
            # The page re-renders lists as events arrive, so an element found a moment ago may be gone: retry.
            return WebDriverWait(self.d, timeout, poll_frequency=0.1,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: cond())
        except TimeoutException:
            self.shot(f"FAILED-{self.name}-{what.replace(' ', '-')[:40]}")
            raise AssertionError(f"{self.name}: timed out waiting for {what}")

    def css(self, sel):
        return self.d.find_elements(By.CSS_SELECTOR, sel)

    def one(self, sel):
        return self.d.find_element(By.CSS_SELECTOR, sel)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def shot(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        self.d.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))

    def visible(self, sel):
        els = self.css(sel)
        return bool(els) and els[0].is_displayed()

    def login(self, username, password, path="/"):
        self.d.get(URL + path)
        self.wait("the login form", lambda: self.visible("#login-username"))
        self.one("#login-username").send_keys(username)
        self.one("#login-password").send_keys(password)
        self.one("#login-submit").click()

    def login_chat(self, username, password):
        self.login(username, password)
        self.wait("the chat after login", lambda: self.visible("#app"))
        self.wait_online()

    def state(self):
        return self.one("#conn-state").get_attribute("data-state")

    def wait_online(self):
        self.wait("the connection to be online", lambda: self.state() == "online")

    def dialog(self, values):
        for name, value in values.items():
            field = self.one(f"#dialog-{name}")
            field.clear()
            field.send_keys(value)
        self.one("#dialog-ok").click()
        self.wait("the dialog to close", lambda: not self.one("#dialog").is_displayed())

    def conv_item(self, title):
        """The conversation list entry with this title, as {unread, last}, or None."""
        return self.js("""
            for (const li of document.querySelectorAll('#conv-list li.conv')) {
              if (li.querySelector('.conv-name').textContent !== arguments[0]) continue;
              const u = li.querySelector('.unread');
              return {unread: u ? u.textContent : null, last: li.querySelector('.conv-last').textContent, conv: li.dataset.conv};
            }
            return null;""", title)

    def open_conv(self, title):
        self.wait(f"conversation '{title}' in the list", lambda: self.conv_item(title) is not None)
        self.js("""for (const li of document.querySelectorAll('#conv-list li.conv'))
                     if (li.querySelector('.conv-name').textContent === arguments[0]) { li.click(); return; }""", title)
        self.wait(f"conversation '{title}' to open", lambda: self.one("#chat-title").text == title and self.visible("#composer"))

    def send(self, text):
        box = self.one("#composer-input")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def bodies(self):
        return self.js("return [...document.querySelectorAll('#messages li.msg .body')].map((e) => e.textContent)")

    def count(self, text):
        return self.bodies().count(text)

    def status_of(self, text):
        return self.js("""
            for (const li of document.querySelectorAll('#messages li.msg.mine'))
              if (li.querySelector('.body').textContent === arguments[0]) {
                const s = li.querySelector('.status');
                return s ? s.dataset.status : null;
              }
            return null;""", text)

    def click_in_message(self, text, button):
        """Clicks a message's action button (edit, recall), found by the message's text."""
        return self.js("""
            for (const li of document.querySelectorAll('#messages li.msg'))
              if (li.querySelector('.body')?.textContent === arguments[0]) {
                const b = li.querySelector('button.' + arguments[1]);
                if (b) { b.click(); return true; }
              }
            return false;""", text, button)

    def has_edited_mark(self, text):
        return self.js("""
            for (const li of document.querySelectorAll('#messages li.msg'))
              if (li.querySelector('.body').textContent === arguments[0]) return !!li.querySelector('.edited');
            return false;""", text)

    def network(self, online):
        """Cuts or restores this browser's network through the DevTools protocol."""
        self.d.execute_cdp_cmd("Network.enable", {})
        self.d.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": not online, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})

    def csp_violations(self):
        return [e["message"] for e in self.d.get_log("browser") if "Content Security Policy" in e["message"]]

    def quit(self):
        try:
            self.d.quit()
        except Exception:
            pass


class WebClientSuite(unittest.TestCase):
    alice = bob = admin = carol = None

    @classmethod
    def setUpClass(cls):
        token = api("POST", "/v1/auth/login", {"username": ADMIN, "password": ADMIN_PASSWORD})["accessToken"]
        cls.ids = {}
        for name, display in (("alice", "Alice Liddell"), ("bob", "Bob Builder")):
            cls.ids[name] = api("POST", "/v1/admin/users", {"username": name, "password": name + "-password-1",
                                                             "displayName": display}, token)["id"]
        cls.alice = Page("alice")
        cls.bob = Page("bob")

    @classmethod
    def tearDownClass(cls):
        for p in (cls.alice, cls.bob, cls.admin, cls.carol):
            if p:
                p.quit()

    def test_01_pages_are_served_with_a_csp_and_no_inline_code(self):
        with urllib.request.urlopen(URL + "/", timeout=10) as r:
            csp = r.headers["Content-Security-Policy"]
            html = r.read().decode()
        self.assertIn("default-src 'self'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("<script>", html)
        self.assertNotIn(" style=", html)
        self.assertNotIn(" onclick=", html)

    def test_02_two_users_log_in_and_exchange_messages_both_ways(self):
        a, b = self.alice, self.bob
        a.login("alice", "wrong-password")
        a.wait("the wrong-password error", lambda: "wrong username or password" in a.one("#login-error").text)
        a.login_chat("alice", "alice-password-1")
        b.login_chat("bob", "bob-password-1")
        self.assertEqual(a.one("#me").text, "Alice Liddell")

        a.one("#new-chat").click()
        a.dialog({"username": "bob"})
        a.wait("the chat with Bob", lambda: a.one("#chat-title").text == "Bob Builder")
        a.send("hello bob")
        a.wait("the send to be acknowledged", lambda: a.status_of("hello bob") in ("sent", "delivered", "read"))

        # Bob sees the new conversation with an unread count and the last message, then opens it.
        b.wait("Alice's chat in Bob's list", lambda: b.conv_item("Alice Liddell") is not None)
        b.wait("the unread badge", lambda: b.conv_item("Alice Liddell")["unread"] == "1")
        self.assertEqual(b.conv_item("Alice Liddell")["last"], "hello bob")
        b.open_conv("Alice Liddell")
        b.wait("Alice's message", lambda: b.count("hello bob") == 1)
        b.send("hi alice")
        a.wait("Bob's reply", lambda: a.count("hi alice") == 1)
        # Bob's own view draws on its next frame (scheduleRender): Alice's may show the reply first.
        b.wait("Bob's reply in his own view", lambda: b.count("hi alice") == 1)

    def test_03_read_marks_typing_and_presence(self):
        a, b = self.alice, self.bob
        a.wait("the read mark on Alice's message", lambda: a.status_of("hello bob") == "read")
        b.wait("the read mark on Bob's message", lambda: b.status_of("hi alice") == "read")
        b.one("#composer-input").send_keys("typing something")
        a.wait("Bob's typing indicator", lambda: "typing" in a.one("#typing-line").text)
        self.assertIn("Bob Builder", a.one("#typing-line").text)
        b.one("#composer-input").clear()
        a.wait("Bob to be shown online", lambda: a.one("#chat-sub").get_attribute("data-presence") == "online")
        a.shot("01-alice-chat")

    def test_04_offline_peer_gets_every_message_once_and_its_queued_send_is_delivered(self):
        a, b = self.alice, self.bob
        b.network(False)
        b.wait("Bob's client to notice it is offline", lambda: b.state() != "online")
        missed = [f"while you were away {i}" for i in range(1, 4)]
        for text in missed:
            a.send(text)
        for text in missed:
            a.wait(f"'{text}' acknowledged", lambda t=text: a.status_of(t) in ("sent", "delivered", "read"))
        b.send("queued while offline")
        b.wait("the queued send", lambda: b.status_of("queued while offline") == "queued")
        self.assertEqual(b.one("#conn-state").get_attribute("data-queued"), "1")
        b.shot("02-bob-offline-queued")
        for text in missed:
            self.assertEqual(b.count(text), 0, "a message arrived through a cut network")

        b.network(True)
        b.wait_online()
        for text in missed:
            b.wait(f"'{text}' after reconnecting", lambda t=text: b.count(t) >= 1)
        a.wait("Bob's queued message", lambda: a.count("queued while offline") >= 1)
        b.wait("the queue to empty", lambda: b.one("#conn-state").get_attribute("data-queued") == "0")
        time.sleep(1.5)   # anything duplicated would have arrived by now
        for text in missed:
            self.assertEqual(b.count(text), 1, f"'{text}' shown {b.count(text)} times")
        self.assertEqual(a.count("queued while offline"), 1)
        self.assertEqual(b.count("queued while offline"), 1)
        self.assertEqual(b.count("hello bob"), 1)
        bodies = b.bodies()
        self.assertLess(bodies.index(missed[0]), bodies.index(missed[2]), "messages out of order")
        b.shot("03-bob-after-reconnect")

        # A reload resumes from history and the stored cursors: still exactly once.
        b.d.refresh()
        b.wait("the app after reload", lambda: b.visible("#app"))
        b.wait_online()
        b.open_conv("Alice Liddell")
        b.wait("history after reload", lambda: b.count("while you were away 3") == 1)
        for text in missed + ["hello bob", "hi alice", "queued while offline"]:
            self.assertEqual(b.count(text), 1, f"after reload '{text}' shown {b.count(text)} times")

    def test_05_edit_recall_and_an_inline_image(self):
        a, b = self.alice, self.bob
        a.send("to be edited")
        a.wait("the message to be sent", lambda: a.status_of("to be edited") in ("sent", "delivered", "read"))
        b.wait("the message at Bob", lambda: b.count("to be edited") == 1)
        self.assertTrue(a.click_in_message("to be edited", "edit"))
        box = a.one("#composer-input")
        box.clear()
        box.send_keys("edited text")
        box.send_keys(Keys.ENTER)
        b.wait("the edit at Bob", lambda: b.count("edited text") == 1 and b.count("to be edited") == 0)
        self.assertTrue(b.has_edited_mark("edited text"))

        a.send("to be recalled")
        b.wait("the message at Bob", lambda: b.count("to be recalled") == 1)
        self.assertTrue(a.click_in_message("to be recalled", "recall"))
        b.wait("the recall at Bob", lambda: b.count("to be recalled") == 0 and b.count("Message recalled") >= 1)

        # User text is text, never markup.
        a.send("<img src=x onerror=alert(1)><b>bold?</b>")
        b.wait("markup shown as text", lambda: b.count("<img src=x onerror=alert(1)><b>bold?</b>") == 1)
        self.assertEqual(len(b.css("#messages li.msg .body b")), 0)

        path = os.path.join(tempfile.mkdtemp(), "square.png")
        with open(path, "wb") as f:
            f.write(png(40, 30, (220, 60, 60)))
        a.one("#file-input").send_keys(path)
        images = "return [...document.querySelectorAll('#messages img.attachment-image')].map((i) => [i.src, i.naturalWidth])"
        b.wait("the image at Bob", lambda: any(src.startswith("blob:") and w == 40 for src, w in b.js(images)))
        for src, _ in b.js(images):
            self.assertTrue(src.startswith("blob:"), src)
        a.wait("the image at Alice", lambda: any(w == 40 for _, w in a.js(images)))
        a.shot("00-alice-chat")   # README's screenshots are test_theme_and_keys.py's 00-readme-*

    def _message_js(self, page, text, script):
        """Runs `script` with `li` bound to the message whose body is `text` (null when there is none)."""
        return page.js("""
            const li = [...document.querySelectorAll('#messages li.msg')].find((l) => l.querySelector('.body')?.textContent === arguments[0]) || null;
            """ + script, text)

    def test_05b_reply_react_and_search(self):
        a, b = self.alice, self.bob
        # Bob replies to Alice's message: Alice sees the quote above his answer.
        self.assertTrue(b.click_in_message("edited text", "reply"))
        b.wait("the reply banner", lambda: b.visible("#reply-banner"))
        b.send("answering that")
        a.wait("the reply at Alice", lambda: a.count("answering that") == 1)
        a.wait("the quote", lambda: "edited text" in (self._message_js(a, "answering that", "return li && li.querySelector('.quote')?.textContent;") or ""))

        # Bob reacts; Alice sees the chip and adds hers; both see two.
        self.assertTrue(b.click_in_message("edited text", "react"))
        b.wait("the emoji picker", lambda: b.css("#messages .emoji-picker button"))
        b.js("document.querySelector('#messages .emoji-picker button[data-emoji=\"👍\"]').click()")
        chip = "return li && [...li.querySelectorAll('.reaction')].map((c) => c.textContent);"
        a.wait("Bob's reaction at Alice", lambda: self._message_js(a, "edited text", chip) == ["👍 1"])
        self._message_js(a, "edited text", "li.querySelector('.reaction').click();")
        b.wait("both reactions at Bob", lambda: self._message_js(b, "edited text", chip) == ["👍 2"])
        a.wait("both reactions at Alice", lambda: self._message_js(a, "edited text", chip) == ["👍 2"])

        # Search, Chinese included: results show the matching words marked and open the message.
        b.send("明天下午开会讨论预算")
        a.wait("the Chinese message at Alice", lambda: a.count("明天下午开会讨论预算") == 1)
        box = a.one("#search-input")
        box.send_keys("预算")
        box.send_keys(Keys.ENTER)
        marks = "return [...document.querySelectorAll('#search-results li.search-hit mark')].map((m) => m.textContent)"
        a.wait("the search result", lambda: a.js(marks) == ["预算"])
        self.assertTrue(a.visible("#search-panel"))
        a.shot("06-alice-search")
        a.one("#search-results li.search-hit").click()
        a.wait("the conversation with the message", lambda: a.one("#chat-title").text == "Bob Builder")
        box.clear()
        box.send_keys("never said")
        box.send_keys(Keys.ENTER)
        a.wait("no results", lambda: a.one("#search-status").text == "No messages found")
        a.one("#close-search").click()
        a.wait("the conversation list again", lambda: a.visible("#conv-list") and not a.visible("#search-panel"))

    def test_06_groups_contacts_and_history_on_scroll(self):
        a, b = self.alice, self.bob
        a.one("#new-group").click()
        a.dialog({"name": "Team", "members": "bob"})
        a.wait("the group to open", lambda: a.one("#chat-title").text == "Team")
        a.send("hello team")
        b.wait("the group at Bob", lambda: b.conv_item("Team") is not None)
        b.open_conv("Team")
        b.wait("the group message", lambda: b.count("hello team") == 1)
        b.one("#members-btn").click()
        b.wait("the member list", lambda: len(b.css("#member-list li.member")) == 2)

        # Contacts: Alice asks, Bob accepts.
        a.one("#tab-contacts").click()
        a.one("#add-contact-name").send_keys("bob")
        a.one("#add-contact-form button").click()
        a.wait("the outgoing request", lambda: a.css("#contact-list li.contact[data-state='outgoing']"))
        b.one("#tab-contacts").click()
        b.wait("the incoming request", lambda: b.css("#contact-list li.contact[data-state='incoming']"))
        b.one("#contact-list li.contact[data-state='incoming'] button.accept").click()
        b.wait("the accepted contact", lambda: b.css("#contact-list li.contact[data-state='accepted']"))
        a.one("#tab-chats").click()
        a.one("#tab-contacts").click()
        a.wait("Alice to see the contact accepted", lambda: a.css("#contact-list li.contact[data-state='accepted']"))
        a.one("#tab-chats").click()
        b.one("#tab-chats").click()

        # History: 70 messages through the API, then scroll up for the older ones.
        token = api("POST", "/v1/auth/login", {"username": "alice", "password": "alice-password-1"})["accessToken"]
        conv = api("POST", "/v1/conversations/group", {"name": "Archive", "members": [self.ids["bob"]]}, token)["id"]
        ws_free = [f"old {i:03d}" for i in range(70)]
        self._send_over_socket(token, conv, ws_free)
        # Bob's open tab received them live; after a reload only the newest page is fetched, the rest on scroll.
        b.wait("the new group at Bob", lambda: b.conv_item("Archive") is not None)
        cursor = f"return (JSON.parse(localStorage.getItem('warbler.cursors.{self.ids['bob']}')) || {{}})['{conv}'] || 0"
        b.wait("Bob's tab to hold all 71 messages", lambda: b.js(cursor) == 71)   # 1 system + 70
        b.d.refresh()
        b.wait("the app after reload", lambda: b.visible("#app"))
        b.wait_online()
        b.open_conv("Archive")
        b.wait("the newest messages", lambda: b.count("old 069") == 1)
        self.assertEqual(b.count("old 000"), 0, "everything was loaded at once, not on scroll")
        for _ in range(10):
            b.js("document.getElementById('messages').scrollTop = 0")
            time.sleep(0.5)
            if b.count("old 000") == 1:
                break
        b.wait("older history after scrolling up", lambda: b.count("old 000") == 1)
        self.assertEqual(sorted(set(b.bodies()) & set(ws_free)), ws_free)

    def test_06b_mentions_with_autocomplete_and_the_unread_mention_badge(self):
        a, b = self.alice, self.bob
        a.open_conv("Team")
        box = a.one("#composer-input")
        box.send_keys("@")
        options = "return [...document.querySelectorAll('#mention-list li')].map((li) => li.textContent)"
        a.wait("the mention suggestions", lambda: a.visible("#mention-list") and sorted(a.js(options)) == ["@Bob Builder", "@all"])
        box.send_keys("bo")
        a.wait("the suggestions narrowed", lambda: a.js(options) == ["@Bob Builder"])
        box.send_keys(Keys.ENTER)
        a.wait("the picked mention", lambda: box.get_attribute("value") == "@Bob Builder ")
        box.send_keys("please look")
        box.send_keys(Keys.ENTER)
        badge = """for (const li of document.querySelectorAll('#conv-list li.conv'))
                     if (li.querySelector('.conv-name').textContent === 'Team') return li.querySelector('.badge.mention')?.textContent || null;
                   return null;"""
        b.wait("the unread-mention badge at Bob", lambda: b.js(badge) == "@1")
        b.open_conv("Team")
        b.wait("the mention marked", lambda: self._message_js(b, "@Bob Builder please look", "return !!(li && li.classList.contains('mentioned'));"))
        b.wait("the badge cleared once read", lambda: b.js(badge) is None)

    def test_06c_pinned_conversations_and_pinned_messages(self):
        a, b = self.alice, self.bob
        # Bob pins Team: it moves to the top of his list, with the pin shown.
        first = "return document.querySelector('#conv-list li.conv .conv-name')?.textContent"
        b.js("""for (const li of document.querySelectorAll('#conv-list li.conv'))
                  if (li.querySelector('.conv-name').textContent === 'Team') li.querySelector('button.pin').click();""")
        pinned = "return document.querySelector('#conv-list li.conv button.pin')?.dataset.pinned"
        b.wait("Team pinned first", lambda: b.js(first) == "Team" and b.js(pinned) == "1")
        # Newer messages elsewhere do not push a pinned conversation down.
        token = api("POST", "/v1/auth/login", {"username": "alice", "password": "alice-password-1"})["accessToken"]
        archive = [c["id"] for c in api("GET", "/v1/conversations", token=token) if c.get("name") == "Archive"][0]
        self._send_over_socket(token, archive, ["newer elsewhere"], prefix="pin-test-")
        b.wait("the newer message at Bob", lambda: b.conv_item("Archive")["last"] == "newer elsewhere")
        self.assertEqual(b.js(first), "Team")
        # Alice, the owner, pins a message; Bob (a member, with Team open) sees it above the conversation.
        a.open_conv("Team")
        self.assertTrue(a.click_in_message("hello team", "pin-message"))
        b.open_conv("Team")
        bar = "return [...document.querySelectorAll('#pinned-bar .pinned-message')].map((e) => e.textContent)"
        b.wait("the pinned message at Bob", lambda: b.visible("#pinned-bar") and any("hello team" in t for t in b.js(bar)))
        self.assertEqual(b.js("return [...document.querySelectorAll('#messages li.msg button.pin-message')].length"), 0,
                         "members cannot pin")
        b.shot("07-bob-pinned")

    def _send_over_socket(self, token, conv, texts, prefix="hist-"):
        """Sends through the browser's own WebSocket stack (in Alice's tab): no Python WebSocket library is needed."""
        script = """
            const [url, token, conv, texts, prefix, done] = arguments;
            const ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/ws');
            let acks = 0;
            ws.onopen = () => ws.send(JSON.stringify({type: 'auth', token}));
            ws.onmessage = (e) => {
              const f = JSON.parse(e.data);
              if (f.type === 'ready') texts.forEach((t, i) => ws.send(JSON.stringify({type: 'send', cid: prefix + i, conv, kind: 'text', text: t})));
              if (f.type === 'ack' && ++acks === texts.length) { ws.close(); done(acks); }
              if (f.type === 'error') { ws.close(); done(f.message); }
            };
        """
        self.alice.d.set_script_timeout(30)
        got = self.alice.d.execute_async_script(script, URL, token, conv, texts, prefix)
        self.assertEqual(got, len(texts))

    def test_06d_the_assistants_answer_grows_in_place(self):
        a = self.alice
        a.one("#new-chat").click()
        a.dialog({"username": "assistant"})
        a.wait("the chat with the assistant", lambda: a.one("#chat-title").text == "Assistant")
        a.send("What is Warbler?")
        final = "Warbler is a chat server in one file."
        answers = lambda: a.js("""return [...document.querySelectorAll('#messages li.msg.theirs')].map((li) =>
            ({text: li.querySelector('.body').textContent, streaming: li.classList.contains('streaming')}))""")
        seen = []

        def grown():
            now = answers()
            if now:
                seen.append(now[-1])
            return bool(now) and now[-1]["text"] == final and not now[-1]["streaming"]

        a.wait("the assistant's complete answer", grown, timeout=30)
        partial = [s for s in seen if s["streaming"] and final.startswith(s["text"]) and len(s["text"]) < len(final)]
        self.assertTrue(partial, f"the answer should be seen growing, saw {seen[:5]}")
        self.assertEqual(len(answers()), 1, "one message that grew, not one per piece")
        a.shot("assistant-answer")

    def test_07_admin_console_shows_figures_and_creates_a_user_who_then_chats(self):
        WebClientSuite.admin = adm = Page("admin")
        adm.login(ADMIN, ADMIN_PASSWORD, "/admin")
        adm.wait("the console", lambda: adm.visible("#console"))
        adm.wait("the live figures", lambda: adm.css("#figures [data-figure='connections'] .value"))
        self.assertGreaterEqual(int(adm.one("#figures [data-figure='connections'] .value").text), 2)
        self.assertTrue(adm.css("#figures [data-figure='messagesLastMinute']"))
        self.assertTrue(adm.css("#figures [data-figure='databaseBytes']"))
        adm.wait("health", lambda: len(adm.css("#health span")) == 3)
        self.assertEqual(adm.css("#health span.bad"), [])
        adm.wait("the alerts section", lambda: adm.css("#alerts [data-available]"))
        self.assertIn("not available", adm.one("#alerts").text)
        groups = "return [...document.querySelectorAll('#groups tr')].map((r) => [r.cells[1].textContent, r.cells[2].textContent])"
        adm.wait("the groups with member counts", lambda: ["Team", "2"] in adm.js(groups))

        adm.one("#new-username").send_keys("carol")
        adm.one("#new-display-name").send_keys("Carol Singer")
        adm.one("#new-password").send_keys("carol-password-1")
        adm.one("#create-user").click()
        adm.wait("Carol in the user list", lambda: adm.css("#users tr[data-user='carol']"))
        adm.one("#users tr[data-user='carol'] button.promote").click()
        adm.wait("Carol promoted", lambda: adm.one("#users tr[data-user='carol'] .role").text == "admin")
        adm.one("#users tr[data-user='carol'] button.demote").click()
        adm.wait("Carol demoted", lambda: adm.one("#users tr[data-user='carol'] .role").text == "user")
        adm.shot("04-admin-console")

        # Carol logs in on a phone-sized screen and chats with Alice.
        WebClientSuite.carol = c = Page("carol", 390, 844)
        c.login_chat("carol", "carol-password-1")
        c.one("#new-chat").click()
        c.dialog({"username": "alice"})
        c.wait("the chat with Alice", lambda: c.one("#chat-title").text == "Alice Liddell" and c.visible("#composer"))
        self.assertFalse(c.visible("#sidebar"), "on a phone the list and the chat take turns")
        c.send("hi from carol")
        self.alice.open_conv("Carol Singer")
        self.alice.wait("Carol's message", lambda: self.alice.count("hi from carol") == 1)
        self.alice.send("welcome carol")
        c.wait("Alice's answer", lambda: c.count("welcome carol") == 1)
        c.shot("05-carol-phone")

    def test_08_disable_and_reset_password(self):
        adm = self.admin
        adm.one("#users tr[data-user='carol'] button.disable").click()
        adm.wait("Carol disabled", lambda: adm.one("#users tr[data-user='carol'] .status").text == "disabled")
        with self.assertRaises(urllib.error.HTTPError):
            api("POST", "/v1/auth/login", {"username": "carol", "password": "carol-password-1"})
        adm.one("#users tr[data-user='carol'] button.enable").click()
        adm.wait("Carol enabled", lambda: adm.one("#users tr[data-user='carol'] .status").text == "active")
        adm.one("#users tr[data-user='carol'] button.reset-password").click()
        adm.dialog({"password": "carol-password-2"})
        self.assertTrue(api("POST", "/v1/auth/login", {"username": "carol", "password": "carol-password-2"})["accessToken"])

    def test_08c_bots_and_a_webhook_with_its_delivery_log_from_the_console(self):
        adm = self.admin
        adm.d.get(URL + "/admin")
        adm.wait("the console", lambda: adm.visible("#console"))
        # A bot: its token is shown once and works.
        adm.one("#new-bot-username").send_keys("deploybot")
        adm.one("#new-bot-description").send_keys("posts deploys")
        adm.one("#create-bot").click()
        adm.wait("the bot's token", lambda: adm.visible("#secret-box") and adm.css("#secret-box code.secret"))
        token = adm.one("#secret-box code.secret").text
        self.assertTrue(token.startswith("wbot_"))
        self.assertEqual(api("GET", "/v1/me", token=token)["username"], "deploybot")
        adm.wait("the bot in the list", lambda: adm.css("#bots tr[data-bot='deploybot']"))
        adm.one("#bots tr[data-bot='deploybot'] button.rotate-token").click()
        adm.wait("a new token", lambda: adm.css("#secret-box code.secret") and adm.one("#secret-box code.secret").text != token)
        with self.assertRaises(urllib.error.HTTPError):
            api("GET", "/v1/me", token=token)

        # A webhook to a receiver on loopback: a message makes a delivery, shown with its status; redeliver sends it again.
        got = []

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got.append((self.headers.get("X-Warbler-Delivery"), json.loads(body).get("type")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            adm.one("#new-webhook-url").send_keys(f"http://127.0.0.1:{server.server_port}/hook")
            adm.one("#create-webhook").click()
            adm.wait("the signing secret", lambda: adm.css("#secret-box code.secret") and adm.one("#secret-box code.secret").text.startswith("whsec_"))
            adm.wait("the subscription", lambda: adm.css("#webhooks tr .url"))
            self.alice.open_conv("Bob Builder")
            self.alice.send("a message for the webhook")
            adm.wait("the delivery at the receiver", lambda: any(t == "message.created" for _, t in got), timeout=30)
            adm.one("#webhooks tr button.show-deliveries").click()
            adm.wait("the delivery log", lambda: adm.css("#deliveries tr[data-state='delivered'] .last-status"))
            self.assertEqual(adm.one("#deliveries tr[data-state='delivered'] .last-status").text, "204")
            first = adm.one("#deliveries tr[data-state='delivered']").get_attribute("data-delivery")
            before = len(got)
            adm.one(f"#deliveries tr[data-delivery='{first}'] button.redeliver").click()
            adm.wait("the redelivery at the receiver", lambda: len(got) > before, timeout=30)
            self.assertIn(first, [d for d, _ in got[before:]], "a redelivery keeps its delivery id")
            adm.one("#webhooks tr button.toggle-webhook").click()
            adm.wait("the subscription off", lambda: adm.one("#webhooks tr .state").text.startswith("off"))
            adm.shot("09-admin-bots-webhooks")
        finally:
            server.shutdown()
            server.server_close()

    def test_08b_the_chat_in_chinese_and_back_in_english(self):
        a = self.alice
        a.d.get(URL + "/")
        a.wait("the app", lambda: a.visible("#app"))
        a.wait_online()
        select = "const s = document.getElementById('app-lang'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));"
        a.js(select, "zh-CN")
        label = "return document.querySelector(arguments[0]).textContent"
        a.wait("the Chinese labels", lambda: a.js(label, "#tab-chats") == "会话" and a.js(label, "#send-btn") == "发送")
        self.assertEqual(a.js("return document.documentElement.lang"), "zh-CN")
        self.assertEqual(a.one("#conn-state").text, "在线")
        self.assertEqual(a.one("#search-input").get_attribute("placeholder"), "搜索消息")
        a.open_conv("Bob Builder")
        a.wait("message actions in Chinese", lambda: "回复" in a.js("return [...document.querySelectorAll('#messages button.reply')].map((b) => b.textContent)"))
        a.shot("08-alice-chinese")
        # The choice is remembered across a reload.
        a.d.refresh()
        a.wait("the app after reload", lambda: a.visible("#app"))
        a.wait("Chinese after reload", lambda: a.js(label, "#tab-chats") == "会话")
        a.js(select, "en")
        a.wait("the English labels", lambda: a.js(label, "#tab-chats") == "Chats" and a.js(label, "#send-btn") == "Send")

    def test_09_no_content_security_policy_violations(self):
        for p in (self.alice, self.bob, self.admin, self.carol):
            if p:
                self.assertEqual(p.csp_violations(), [], f"{p.name}'s browser reported CSP violations")


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
