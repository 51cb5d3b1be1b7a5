"""Errors in the user's language, and mutes for a chosen time, in a real browser (headless chromium).

The server's errors are told by their code from the page's catalogue (its English text shows only for a code the
catalogue lacks), warbler-client.js's own errors too (an unreachable server); an owner mutes a member or the whole
group for a chosen time and the panel says until when; a refused send is said in Chinese.

Run by scripts/browser-test.sh, against the same server as the other suites, with its own users (mia, ned).
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_web import ADMIN, ADMIN_PASSWORD, URL, Page, api  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

LANG = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change'));"
HOUR = 3600_000


def token(username, password):
    return api("POST", "/v1/auth/login", {"username": username, "password": password})["accessToken"]


class ErrorsAndMutesSuite(unittest.TestCase):
    mia = ned = None

    @classmethod
    def setUpClass(cls):
        root = token(ADMIN, ADMIN_PASSWORD)
        cls.ids = {}
        for name, display in (("mia", "Mia Chen"), ("ned", "Ned Li")):
            cls.ids[name] = api("POST", "/v1/admin/users", {"username": name, "password": name + "-password-1",
                                                             "displayName": display}, root)["id"]
        cls.mia_token = token("mia", "mia-password-1")
        cls.desk = api("POST", "/v1/conversations/group", {"name": "Desk", "members": [cls.ids["ned"]]}, cls.mia_token)["id"]
        cls.mia, cls.ned = Page("mia"), Page("ned")

    @classmethod
    def tearDownClass(cls):
        for p in (cls.mia, cls.ned):
            if p:
                p.quit()

    def group(self):
        return api("GET", f"/v1/conversations/{self.desk}", token=self.mia_token)

    def clock(self, p, ms):
        """`ms` as the page shows a time (ui.js formatTime: hh:mm, with the date unless it is today)."""
        return p.js("""const d = new Date(arguments[0]), lang = document.documentElement.lang;
                       const hm = d.toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
                       return d.toDateString() === new Date().toDateString() ? hm : `${d.toLocaleDateString(lang)} ${hm}`;""", ms)

    def test_01_a_wrong_password_in_chinese(self):
        n = self.ned
        n.d.get(URL + "/")
        n.wait("the login form", lambda: n.visible("#login-lang"))
        n.js(LANG, "#login-lang", "zh-CN")
        n.one("#login-username").send_keys("ned")
        n.one("#login-password").send_keys("not-his-password")
        n.one("#login-submit").click()
        n.wait("the wrong-password error in Chinese", lambda: n.one("#login-error").text == "用户名或密码错误，或账号已被停用")

    def test_02_an_unreachable_server_in_chinese(self):
        n = self.ned
        n.network(False)
        n.one("#login-password").clear()
        n.one("#login-password").send_keys("ned-password-1")
        n.one("#login-submit").click()
        n.wait("the unreachable-server error in Chinese", lambda: n.one("#login-error").text == "无法连接服务器，请检查网络后重试")
        n.shot("16-ned-unreachable-zh-CN")
        n.network(True)
        n.one("#login-submit").click()
        n.wait("the chat after login", lambda: n.visible("#app"))
        n.wait_online()

    def test_03_a_muted_members_refused_send_in_chinese(self):
        m, n = self.mia, self.ned
        m.login_chat("mia", "mia-password-1")
        if not n.visible("#app"):   # test_02 failed before logging him in
            n.network(True)
            n.login_chat("ned", "ned-password-1")
        m.open_conv("Desk")
        n.open_conv("Desk")
        # Ned's page cannot know of the mute while offline, so his send goes out and the server refuses it.
        n.network(False)
        api("PUT", f"/v1/conversations/{self.desk}/members/{self.ids['ned']}/mute",
            {"until": int(time.time() * 1000) + HOUR}, self.mia_token)
        n.send("sent while muted")
        n.network(True)
        n.wait("the refusal in Chinese", lambda: n.one("#chat-error").text.startswith("你已被管理员禁言"))
        self.assertNotIn("admin", n.one("#chat-error").text)
        n.shot("16-ned-refused-muted-zh-CN")
        n.wait("the composer disabled", lambda: n.one("#composer-input").get_attribute("disabled") is not None)
        time.sleep(1)
        self.assertEqual(m.count("sent while muted"), 0)
        api("DELETE", f"/v1/conversations/{self.desk}/members/{self.ids['ned']}/mute", None, self.mia_token)
        n.wait("Ned free again", lambda: not n.visible("#muted-banner"))

    def test_04_a_member_muted_for_8_hours(self):
        m, n = self.mia, self.ned
        m.one("#members-btn").click()
        row = f"#member-list li[data-user='{self.ids['ned']}']"
        m.wait("Ned's mute choice", lambda: m.css(f"{row} select.mute-for"))
        self.assertEqual(m.js(f"return [...document.querySelectorAll(\"{row} select.mute-for option\")].map((o) => o.textContent)"),
                         ["1 hour", "8 hours", "1 day", "1 week", "until turned off"])
        Select(m.one(f"{row} select.mute-for")).select_by_visible_text("8 hours")
        m.shot("16-mia-mute-choice-en")
        before = int(time.time() * 1000)
        m.one(f"{row} button.mute-member").click()
        m.wait("Ned muted", lambda: m.one(f"{row} button.mute-member").text == "Unmute")
        until = next(x for x in self.group()["members"] if x["user"] == self.ids["ned"])["mutedUntil"]
        self.assertTrue(before + 8 * HOUR <= until <= int(time.time() * 1000) + 8 * HOUR)
        self.assertIn(f"muted until {self.clock(m, until)}", m.one(row).text)
        n.wait("Ned told until when, in Chinese",
               lambda: n.visible("#muted-banner") and n.one("#muted-banner").text == f"你已被管理员禁言，{self.clock(n, until)} 解除")
        m.one(f"{row} button.mute-member").click()
        n.wait("Ned free again", lambda: not n.visible("#muted-banner"))

    def test_05_the_group_muted_for_an_hour(self):
        m, n = self.mia, self.ned
        m.wait("the mute-all choice", lambda: m.visible("#mute-all-for"))
        self.assertEqual(Select(m.one("#mute-all-for")).first_selected_option.text, "until turned off")
        Select(m.one("#mute-all-for")).select_by_visible_text("1 hour")
        n.network(False)
        before = int(time.time() * 1000)
        m.one("#mute-all").click()
        m.wait("the group muted", lambda: m.one("#mute-all").get_attribute("data-on") == "1")
        until = self.group()["allMutedUntil"]
        self.assertTrue(before + HOUR <= until <= int(time.time() * 1000) + HOUR)
        m.wait("until when, in the panel", lambda: m.visible("#mute-all-state")
               and m.one("#mute-all-state").text == f"Everyone is muted until {self.clock(m, until)}")
        self.assertFalse(m.visible("#mute-all-for"))
        m.shot("16-mia-group-muted-1h-en")
        # Ned, offline, sends; back online, the server refuses it and he is told why and until when, in Chinese.
        n.send("sent in a muted group")
        n.network(True)
        expected = f"全员禁言中，{self.clock(n, until)} 前仅群主和管理员可以发言"
        n.wait("the refusal in Chinese", lambda: n.one("#chat-error").text == expected)
        n.wait("the banner", lambda: n.visible("#muted-banner") and n.one("#muted-banner").text == expected)
        m.send("the owner still sends")
        n.wait("the owner's message", lambda: n.count("the owner still sends") == 1)
        self.assertEqual(m.count("sent in a muted group"), 0)
        # The panel in Chinese says it too; lifted, the choice is back.
        m.js(LANG, "#app-lang", "zh-CN")
        m.wait("until when, in Chinese", lambda: m.one("#mute-all-state").text == f"全员禁言至 {self.clock(m, until)}")
        m.one("#mute-all").click()
        m.wait("the mute lifted", lambda: m.visible("#mute-all-for") and not m.visible("#mute-all-state"))
        n.wait("Ned free again", lambda: not n.visible("#muted-banner"))
        m.js(LANG, "#app-lang", "en")


if __name__ == "__main__":
    unittest.main(verbosity=2)
