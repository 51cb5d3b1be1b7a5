"""The search box's filters in a real browser (headless chromium through chromedriver): by sender (a username) and
by dates (local days, both ends included), on top of the words and "This chat"; an unknown sender is said so.

Run by scripts/browser-test.sh, against the same server as the other suites, with its own users (kim, lee).
"""
import datetime
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_web import ADMIN, ADMIN_PASSWORD, Page, api  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

HITS = "return [...document.querySelectorAll('#search-results li.search-hit .hit-text')].map((e) => e.textContent).sort()"


class SearchFiltersSuite(unittest.TestCase):
    kim = lee = None

    @classmethod
    def setUpClass(cls):
        root = api("POST", "/v1/auth/login", {"username": ADMIN, "password": ADMIN_PASSWORD})["accessToken"]
        ids = {}
        for name, display in (("kim", "Kim Park"), ("lee", "Lee Wong")):
            ids[name] = api("POST", "/v1/admin/users", {"username": name, "password": name + "-password-1",
                                                         "displayName": display}, root)["id"]
        kim = api("POST", "/v1/auth/login", {"username": "kim", "password": "kim-password-1"})["accessToken"]
        api("POST", "/v1/conversations/group", {"name": "Budget", "members": [ids["lee"]]}, kim)
        cls.kim, cls.lee = Page("kim"), Page("lee")

    @classmethod
    def tearDownClass(cls):
        for p in (cls.kim, cls.lee):
            if p:
                p.quit()

    def search(self, words, sender="", since="", until=""):
        k = self.kim
        if not k.js("return document.getElementById('search-filters').open"):
            k.one("#search-filters summary").click()
        k.wait("the filters", lambda: k.visible("#search-sender"))
        k.one("#search-sender").clear()
        k.one("#search-sender").send_keys(sender)
        for field, value in (("#search-since", since), ("#search-until", until)):
            k.js("document.querySelector(arguments[0]).value = arguments[1];", field, value)
        box = k.one("#search-input")
        box.clear()
        box.send_keys(words)
        k.one("#search-go").click()

    def test_01_by_sender_and_by_dates(self):
        k, l = self.kim, self.lee
        k.login_chat("kim", "kim-password-1")
        l.login_chat("lee", "lee-password-1")
        k.open_conv("Budget")
        l.open_conv("Budget")
        k.send("budget draft one")
        l.send("budget approved")
        k.wait("Lee's message", lambda: k.count("budget approved") == 1)
        # Words only, with Enter in the box (the filters folded): both.
        box = k.one("#search-input")
        box.send_keys("budget")
        box.send_keys(Keys.ENTER)
        k.wait("both messages", lambda: k.js(HITS) == ["budget approved", "budget draft one"])
        # From Lee only.
        self.search("budget", sender="lee")
        k.wait("Lee's message only", lambda: k.js(HITS) == ["budget approved"])
        # Dates are local days, both ends included: today finds them, yesterday and tomorrow do not.
        today = datetime.date.fromisoformat(k.js("const d = new Date(); return [d.getFullYear(), String(d.getMonth() + 1).padStart(2, '0'), String(d.getDate()).padStart(2, '0')].join('-')"))
        day = datetime.timedelta(days=1)
        self.search("budget", since=today.isoformat(), until=today.isoformat())
        k.wait("today's two", lambda: k.js(HITS) == ["budget approved", "budget draft one"])
        self.search("budget", until=(today - day).isoformat())
        k.wait("none until yesterday", lambda: k.one("#search-status").text == "No messages found")
        self.search("budget", since=(today + day).isoformat())
        k.wait("none from tomorrow", lambda: k.one("#search-status").text == "No messages found")
        k.shot("14-kim-search-filters")
        # A sender nobody is called is said so.
        self.search("budget", sender="nobody-at-all")
        k.wait("the unknown sender", lambda: k.one("#search-status").text == "no user is named “nobody-at-all”")
        # Close clears the search and its filters.
        k.one("#close-search").click()
        k.wait("the list again", lambda: not k.visible("#search-panel"))
        self.assertEqual(k.js("return ['search-sender', 'search-since', 'search-until'].map((id) => document.getElementById(id).value)"), ["", "", ""])
        self.assertFalse(k.js("return document.getElementById('search-filters').open"))

    def test_02_no_content_security_policy_violations(self):
        for p in (self.kim, self.lee):
            self.assertEqual(p.csp_violations(), [], f"{p.name}'s browser reported CSP violations")


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
