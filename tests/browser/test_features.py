"""Issue 15's company-chat features in a real browser (headless chromium through chromedriver): announcements,
mutes, forwarding, invite links with join approval, live draft push, browser notifications and the unread title,
and the admin console's compliance search and export, content moderation and Chinese UI.

Run by scripts/browser-test.sh after test_web.py, against the same server, with the same environment (and
WARBLER_BIN, the warbler executable, to verify a downloaded export). Its users are its own (dana, erin, frank).

The Notifications API cannot be observed in headless chromium (nothing is drawn), and a headless tab is never
hidden. So the pages of this suite get, before any of their code runs, a stand-in `Notification` that records what
the page asks to show and grants permission when asked, and a `document.visibilityState` the test sets: the page's
own code (the button, the decision to notify, the title) is what is tested.
"""
import glob
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_web import ADMIN, ADMIN_PASSWORD, URL, Page, api  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

NOTIFICATIONS_STAND_IN = """
window.__notes = [];
window.__hidden = false;
window.__permission = 'default';
window.Notification = class {
  constructor(title, options) { window.__notes.push({ title, body: (options || {}).body, tag: (options || {}).tag }); this.onclick = null; }
  close() {}
  static get permission() { return window.__permission; }
  static requestPermission() { window.__permission = 'granted'; return Promise.resolve('granted'); }
};
Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get() { return window.__hidden ? 'hidden' : 'visible'; } });
"""


ZH_GROUP_MUTED = "全员禁言中，仅群主和管理员可以发言"


def page(name, width=1280, height=800):
    p = Page(name, width, height)
    p.d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NOTIFICATIONS_STAND_IN})
    return p


def token(username, password):
    return api("POST", "/v1/auth/login", {"username": username, "password": password})["accessToken"]


class FeaturesSuite(unittest.TestCase):
    dana = erin = frank = phone = admin = None

    @classmethod
    def setUpClass(cls):
        root = token(ADMIN, ADMIN_PASSWORD)
        cls.ids = {}
        for name, display in (("dana", "Dana Scully"), ("erin", "Erin Brockovich"), ("frank", "Frank Castle")):
            cls.ids[name] = api("POST", "/v1/admin/users", {"username": name, "password": name + "-password-1",
                                                             "displayName": display}, root)["id"]
        dana = token("dana", "dana-password-1")
        cls.ops = api("POST", "/v1/conversations/group", {"name": "Ops", "members": [cls.ids["erin"]]}, dana)["id"]
        cls.direct = api("POST", "/v1/conversations/direct", {"userId": cls.ids["erin"]}, dana)["id"]
        cls.dana = page("dana")
        cls.erin = page("erin")

    @classmethod
    def tearDownClass(cls):
        for p in (cls.dana, cls.erin, cls.frank, cls.phone, cls.admin):
            if p:
                p.quit()

    def message_js(self, p, text, script):
        return p.js("""
            const [text, body] = arguments;
            const li = [...document.querySelectorAll('#messages li.msg')].find((e) => e.querySelector('.body')?.textContent === text);
            return new Function('li', body)(li);""", text, script)

    def test_01_announcements_and_mutes(self):
        d, e = self.dana, self.erin
        d.login_chat("dana", "dana-password-1")
        e.login_chat("erin", "erin-password-1")
        d.open_conv("Ops")
        e.open_conv("Ops")

        # Dana (the owner) posts an announcement: it shows at the top of Erin's conversation, with who and when.
        d.one("#members-btn").click()
        d.wait("the owner's tools", lambda: d.visible("#edit-announcement"))
        d.one("#edit-announcement").click()
        d.dialog({"text": "值班表已更新 — rota updated"})
        e.wait("the announcement at Erin", lambda: e.visible("#announcement-bar") and e.one("#announcement-text").text == "值班表已更新 — rota updated")
        self.assertIn("Dana Scully", e.one("#announcement-meta").text)

        # Dana mutes Erin for an hour: Erin's composer is disabled, saying why; unmuted, she sends again.
        member = f"#member-list li.member[data-user='{self.ids['erin']}']"
        d.wait("Erin in the member list", lambda: d.css(f"{member} button.mute-member"))
        d.one(f"{member} button.mute-member").click()
        e.wait("Erin muted", lambda: e.visible("#muted-banner") and e.one("#composer-input").get_attribute("disabled") is not None)
        self.assertTrue(e.one("#muted-banner").text.startswith("An admin muted you in this group until"))
        e.shot("10-erin-muted-en")
        d.wait("the unmute button", lambda: d.one(f"{member} button.mute-member").text == "Unmute")
        d.one(f"{member} button.mute-member").click()
        e.wait("Erin free again", lambda: not e.visible("#muted-banner") and e.one("#composer-input").get_attribute("disabled") is None)

        # The whole group (全员禁言): members may not send, the owner still may.
        d.one("#mute-all").click()
        e.wait("the group muted at Erin", lambda: e.visible("#muted-banner") and "owner and admins" in e.one("#muted-banner").text)
        d.send("only admins now")
        e.wait("the owner's message while muted", lambda: e.count("only admins now") == 1)
        d.wait("the unmute-all button", lambda: d.one("#mute-all").get_attribute("data-on") == "1")
        d.one("#mute-all").click()
        e.wait("the group unmuted at Erin", lambda: not e.visible("#muted-banner"))
        e.send("forward me please")
        d.wait("Erin's message at Dana", lambda: d.count("forward me please") == 1)
        d.one("#close-members").click()

    def test_02_forwarding(self):
        d = self.dana
        self.assertTrue(d.click_in_message("forward me please", "forward"))
        d.wait("the forward bar", lambda: d.visible("#forward-bar"))
        d.one("#forward-go").click()
        d.wait("the forward dialog", lambda: d.visible("#dialog-to"))
        d.js("const s = document.getElementById('dialog-to'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));", str(self.direct))
        d.one("#dialog-ok").click()
        d.wait("the direct chat with the copy", lambda: d.one("#chat-title").text == "Erin Brockovich" and d.count("forward me please") == 1)
        label = self.message_js(d, "forward me please", "return li && li.querySelector('.forwarded')?.textContent;")
        self.assertIn("Erin Brockovich", label or "")
        self.erin.wait("the copy at Erin", lambda: self.erin.conv_item("Dana Scully") is not None
                       and self.erin.conv_item("Dana Scully")["last"] == "forward me please")
        # A search of two words finds the original and the copy (the words travel as %20, not as a literal '+').
        e = self.erin
        box = e.one("#search-input")
        box.send_keys("forward please")
        box.send_keys(Keys.ENTER)
        hits = "return [...document.querySelectorAll('#search-results li.search-hit mark')].map((m) => m.textContent)"
        e.wait("both copies found", lambda: e.js(hits) == ["forward", "please", "forward", "please"])
        e.one("#close-search").click()

    def test_03_invite_link_with_approval(self):
        d = self.dana
        d.open_conv("Ops")
        d.one("#members-btn").click()
        d.wait("the invite button", lambda: d.visible("#make-invite"))
        d.one("#make-invite").click()
        d.wait("the invite dialog", lambda: d.visible("#dialog-hours"))
        d.js("const s = document.getElementById('dialog-approval'); s.value = 'yes'; s.dispatchEvent(new Event('change'));")
        d.one("#dialog-ok").click()
        d.wait("the invite link", lambda: d.visible("#invite-link") and "#invite=" in (d.one("#invite-link").get_attribute("value") or ""))
        link = d.one("#invite-link").get_attribute("value")

        FeaturesSuite.frank = f = page("frank")
        f.login_chat("frank", "frank-password-1")
        f.d.get(link)
        f.wait("the join question", lambda: f.visible("#dialog") and "Ops" in f.one("#dialog-title").text)
        self.assertIn("admin will decide", f.one("#dialog-title").text)
        f.one("#dialog-ok").click()
        f.wait("the request sent", lambda: "request to join was sent" in f.one("#chat-error").text)
        self.assertIsNone(f.conv_item("Ops"))

        # Dana sees the request in the member list and accepts it: Frank has the group.
        d.one("#close-members").click()
        d.one("#members-btn").click()
        request = f"#join-requests li.join-request[data-user='{self.ids['frank']}']"
        d.wait("Frank's join request", lambda: d.visible("#join-requests") and d.css(request))
        d.shot("11-dana-join-request-en")
        d.one(f"{request} button.accept").click()
        f.wait("the group at Frank", lambda: f.conv_item("Ops") is not None, timeout=30)
        d.wait("Frank a member", lambda: d.css(f"#member-list li.member[data-user='{self.ids['frank']}']"))
        d.one("#close-members").click()

    def test_04_a_draft_follows_to_the_other_device_at_once(self):
        d = self.dana
        FeaturesSuite.phone = p = page("dana-phone", 420, 800)
        p.login_chat("dana", "dana-password-1")
        p.open_conv("Erin Brockovich")
        # Dana types in Ops on the desktop; the phone's list shows the draft within a moment, without a reload.
        d.open_conv("Ops")
        d.one("#composer-input").send_keys("未完成的草稿")
        draft = "return [...document.querySelectorAll('#conv-list li.conv')].find((li) => li.querySelector('.conv-name').textContent === 'Ops')?.querySelector('.conv-draft')?.textContent || null"
        p.wait("the draft in the phone's list", lambda: p.js(draft) == "Draft: 未完成的草稿")
        # With Ops open on the phone too, the desktop's next words replace the phone's composer text as they are saved.
        p.open_conv("Ops")
        p.wait("the draft in the phone's composer", lambda: p.one("#composer-input").get_attribute("value") == "未完成的草稿")
        d.one("#composer-input").send_keys("，继续写")
        p.wait("the newer draft in the phone's composer", lambda: p.one("#composer-input").get_attribute("value") == "未完成的草稿，继续写")
        p.shot("12-dana-phone-draft-en")
        # Sent on the desktop: the draft is deleted, and the phone's list shows the message instead.
        d.one("#composer-input").send_keys(Keys.ENTER)
        p.open_conv("Erin Brockovich")
        p.wait("the sent text in the list", lambda: p.js(draft) is None and p.conv_item("Ops")["last"] == "未完成的草稿，继续写")

    def test_05_notifications_while_the_tab_is_hidden_and_the_unread_title(self):
        e, d = self.erin, self.dana
        e.open_conv("Dana Scully")
        # Permission is asked for on a click, not before.
        self.assertEqual(e.js("return window.__permission"), "default")
        e.wait("the notifications button", lambda: e.visible("#notify-toggle"))
        e.one("#notify-toggle").click()
        e.wait("permission granted and the button gone", lambda: e.js("return window.__permission") == "granted" and not e.visible("#notify-toggle"))

        # Visible tab: no notification. Hidden tab: one, with the group's name and the sender; the title counts.
        d.open_conv("Ops")
        d.send("seen while looking")
        e.wait("the visible-tab message", lambda: e.conv_item("Ops")["last"] == "seen while looking")
        self.assertEqual(e.js("return window.__notes.length"), 0)
        e.js("window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'));")
        d.send("seen in a notification")
        e.wait("the notification", lambda: e.js("return window.__notes.length") == 1)
        note = e.js("return window.__notes[0]")
        self.assertEqual(note["title"], "Ops")
        self.assertEqual(note["body"], "Dana Scully: seen in a notification")
        e.wait("the unread count in the title", lambda: e.d.title.startswith("(") and e.d.title.endswith(") Warbler"))

        # A muted conversation notifies only a mention.
        e.js("window.__hidden = false;")
        e.js("""for (const li of document.querySelectorAll('#conv-list li.conv'))
                  if (li.querySelector('.conv-name').textContent === 'Ops') li.querySelector('button.mute').click();""")
        e.wait("Ops muted", lambda: e.js("""return [...document.querySelectorAll('#conv-list li.conv')].find((li) =>
                  li.querySelector('.conv-name').textContent === 'Ops')?.querySelector('button.mute')?.dataset.muted""") == "1")
        e.js("window.__hidden = true;")
        d.send("muted chatter")
        e.wait("the muted message arrived", lambda: e.conv_item("Ops")["last"] == "muted chatter")
        self.assertEqual(e.js("return window.__notes.length"), 1)
        box = d.one("#composer-input")
        box.send_keys("@er")
        d.wait("the mention suggestion", lambda: d.visible("#mention-list"))
        box.send_keys(Keys.ENTER)
        box.send_keys("please check")
        box.send_keys(Keys.ENTER)
        e.wait("the mention's notification", lambda: e.js("return window.__notes.length") == 2)
        self.assertEqual(e.js("return window.__notes[1].title"), "Dana Scully mentioned you in Ops")
        e.js("window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'));")

    def test_06_the_features_in_chinese(self):
        e = self.erin
        select = "const s = document.getElementById('app-lang'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));"
        e.js(select, "zh-CN")
        e.open_conv("Ops")
        e.wait("the announcement label in Chinese", lambda: e.js("return document.querySelector('#announcement-bar strong').textContent") == "群公告")
        self.dana.one("#members-btn").click()
        self.dana.wait("the mute-all button", lambda: self.dana.visible("#mute-all"))
        self.dana.one("#mute-all").click()
        e.wait("the group mute in Chinese", lambda: e.visible("#muted-banner") and e.one("#muted-banner").text == ZH_GROUP_MUTED)
        e.shot("10-erin-muted-zh-CN")
        self.dana.one("#mute-all").click()
        self.dana.one("#close-members").click()
        e.wait("the group unmuted", lambda: not e.visible("#muted-banner"))
        e.js(select, "en")

    def test_07_compliance_search_export_and_audit_in_the_console(self):
        FeaturesSuite.admin = a = page("admin-compliance")
        downloads = tempfile.mkdtemp(prefix="warbler-downloads-")
        a.d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
        a.login(ADMIN, ADMIN_PASSWORD, "/admin")
        a.wait("the console", lambda: a.visible("#console"))
        a.wait("the export key", lambda: len(a.one("#compliance-key").text) > 40)
        self.assertIn("Ed25519", a.one("#compliance-key-note").text)

        # The admin is in none of these conversations, and finds them all.
        a.one("#compliance-q").send_keys("值班表")
        a.one("#compliance-search").click()
        a.wait("no hit for an announcement (not a message)", lambda: a.one("#compliance-count").text == "No messages found")
        q = a.one("#compliance-q")
        q.clear()
        q.send_keys("forward please")
        a.one("#compliance-search").click()
        marks = "return [...document.querySelectorAll('#compliance-results tr.compliance-hit mark')].map((m) => m.textContent)"
        convs = "return [...document.querySelectorAll('#compliance-results tr.compliance-hit')].map((tr) => Number(tr.dataset.conv)).sort()"
        a.wait("the hits in both conversations", lambda: a.js(marks) == ["forward", "please", "forward", "please"])
        self.assertEqual(a.js(convs), sorted([self.ops, self.direct]))

        # Export Ops for today: the browser saves a signed archive that the CLI verifies.
        a.js("""const s = document.getElementById('compliance-export-scope'); s.value = 'conv'; s.dispatchEvent(new Event('change'));""")
        a.one("#compliance-export-target").send_keys(str(self.ops))
        today = a.js("const d = new Date(); return [d.getFullYear(), String(d.getMonth() + 1).padStart(2, '0'), String(d.getDate()).padStart(2, '0')].join('-')")
        for field in ("#compliance-export-from", "#compliance-export-to"):
            a.js("document.querySelector(arguments[0]).value = arguments[1];", field, today)
        a.one("#compliance-export").click()
        a.wait("the export saved", lambda: a.one("#compliance-export-result").text.startswith("Saved warbler-export-conv-"))
        a.wait("the file downloaded", lambda: [f for f in glob.glob(downloads + "/*.tar.gz")], timeout=30)
        archive = glob.glob(downloads + "/*.tar.gz")[0]
        binary = os.environ.get("WARBLER_BIN")
        if binary:
            out = subprocess.run([binary, "compliance-verify", archive, "--public-key", a.one("#compliance-key").text],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("signature and all", out.stdout)
            self.assertIn(f"conversation {self.ops}", out.stdout)

        # The audit trail: the export and both searches, newest first, by the admin.
        rows = "return [...document.querySelectorAll('#compliance-audit tr')].map((tr) => [tr.dataset.action, tr.querySelector('.admin').textContent])"
        a.wait("the audit trail", lambda: a.js(rows)[:3] == [["export", ADMIN], ["search", ADMIN], ["search", ADMIN]])
        a.shot("13-admin-compliance-en")

    def test_08_the_admin_console_in_chinese(self):
        a = self.admin
        select = "const s = document.getElementById('admin-lang'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));"
        a.js(select, "zh-CN")
        text = "return document.querySelector(arguments[0]).textContent"
        a.wait("the console in Chinese", lambda: a.js(text, "#compliance-section h2") == "合规" and a.js(text, "#create-user") == "创建用户")
        self.assertEqual(a.js("return document.documentElement.lang"), "zh-CN")
        self.assertEqual(a.d.title, "Warbler 管理控制台")
        a.wait("the users redrawn in Chinese", lambda: a.one("#users tr[data-user='dana'] .status").text == "正常")
        a.wait("the audit trail redrawn in Chinese", lambda: a.one("#compliance-audit tr .action").text in ("导出", "搜索"))
        self.assertIn("签名", a.one("#compliance-key-note").text)
        a.shot("13-admin-compliance-zh-CN")
        # Kept across a reload, then back to English.
        a.d.refresh()
        a.wait("Chinese after reload", lambda: a.visible("#console") and a.js(text, "#compliance-section h2") == "合规")
        a.js(select, "en")
        a.wait("the console in English", lambda: a.js(text, "#compliance-section h2") == "Compliance")

    def test_09_no_content_security_policy_violations(self):
        for p in (self.dana, self.erin, self.frank, self.phone, self.admin):
            if p:
                self.assertEqual(p.csp_violations(), [], f"{p.name}'s browser reported CSP violations")


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
