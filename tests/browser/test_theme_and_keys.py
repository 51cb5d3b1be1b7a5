"""Dark mode, the keyboard and emoji in a real browser (headless chromium through chromedriver): the theme follows the
system's prefers-color-scheme (emulated through the DevTools protocol) unless the switch chooses light or dark, with
every visible text readable (WCAG AA contrast) in both, the admin console included; Enter sends, Shift+Enter breaks
the line, Up in an empty composer edits my last message and Escape cancels it or closes a menu or a dialog; emoji
are drawn in colour from the system's emoji font; and the README's screenshots (light and dark).

Run by scripts/browser-test.sh after the other suites, against the same server, with the same environment. Its
users are its own (gina, hank, ivy).
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_web import ADMIN, ADMIN_PASSWORD, URL, Page, api  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

# Every visible text on the page whose contrast with what is behind it is below WCAG AA (4.5:1; 3:1 for large
# text), as [where, text, ratio]. The background is found by compositing the element's and its ancestors' background
# colours; the text colour's alpha and the ancestors' opacity blend it into that. Disabled controls (exempt in WCAG)
# and texts made only of emoji (drawn in their own colours) are left out; placeholders are checked.
LOW_CONTRAST = r"""
const root = arguments[0] ? document.querySelector(arguments[0]) : document.body;
const rgba = (c) => { const p = (c.match(/[\d.]+/g) || []).map(Number); return p.length < 3 ? [0, 0, 0, 0] : [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
const over = (top, under) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat([1]); };
const lum = (c) => { const v = c.slice(0, 3).map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
function background(e) {
  const layers = [];
  for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
    const c = rgba(getComputedStyle(n).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] >= 1) break;
  }
  let bg = [255, 255, 255, 1];
  for (const l of layers.reverse()) bg = over(l, bg);
  return bg;
}
function opacity(e) { let o = 1; for (let n = e; n && n.nodeType === 1; n = n.parentElement) o *= Number(getComputedStyle(n).opacity); return o; }
const emojiOnly = /^[\p{Extended_Pictographic}\uFE0F\u200D\s]+$/u;
const where = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\s+/).join('.') : '');
const bad = [];
function check(e, color, text) {
  const s = getComputedStyle(e);
  const fg = rgba(color);
  fg[3] *= opacity(e);
  const bg = background(e);
  const r = ratio(over(fg, bg), bg);
  const size = parseFloat(s.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
  if (r < (large ? 3 : 4.5)) bad.push([where(e), text.slice(0, 40), Math.round(r * 100) / 100]);
}
for (const e of root.querySelectorAll('*')) {
  if (!e.getClientRects().length || getComputedStyle(e).visibility !== 'visible' || e.closest(':disabled')) continue;
  if (['INPUT', 'TEXTAREA', 'SELECT'].includes(e.tagName)) {
    if (e.type === 'checkbox' || e.type === 'file') continue;
    if (e.value) check(e, getComputedStyle(e).color, e.value);
    else if (e.placeholder) check(e, getComputedStyle(e, '::placeholder').color, e.placeholder);
    continue;
  }
  const text = [...e.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join('').trim();
  if (!text || emojiOnly.test(text)) continue;
  check(e, getComputedStyle(e).color, text);
}
return bad;
"""

# Whether the page is drawn dark: the page's background and its text, as luminance (0 black … 1 white).
LUMINANCE = """
const lum = (c) => { const p = c.match(/[\\d.]+/g).map(Number).slice(0, 3).map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2]; };
const e = document.querySelector(arguments[0]);
return [lum(getComputedStyle(e).backgroundColor), lum(getComputedStyle(e).color)];
"""

# How many of an element's emoji are drawn in colour: each is drawn on a canvas in the element's own font (the
# page's font list, its @font-face rules included) and counted when most of its ink has colour (hue), not grey.
COLOUR_EMOJI = """
const [sel, text, emoji] = arguments;
return (async () => {
const e = [...document.querySelectorAll(sel)].find((x) => text === null || x.textContent === text);
const s = getComputedStyle(e);
await document.fonts.ready;
let coloured = 0;
for (const ch of emoji) {
  await document.fonts.load(`32px ${s.fontFamily}`, ch);
  const c = document.createElement('canvas'); c.width = 48; c.height = 48;
  const x = c.getContext('2d');
  x.font = `32px ${s.fontFamily}`; x.textBaseline = 'top'; x.fillStyle = '#000';
  x.fillText(ch, 4, 4);
  const p = x.getImageData(0, 0, 48, 48).data;
  let ink = 0, hue = 0;
  for (let i = 0; i < p.length; i += 4) {
    if (p[i + 3] < 128) continue;
    ink++;
    if (Math.max(p[i], p[i + 1], p[i + 2]) - Math.min(p[i], p[i + 1], p[i + 2]) > 40) hue++;
  }
  if (ink > 0 && hue / ink > 0.5) coloured++;
}
return coloured;
})();
"""


def page(name, width=1280, height=800):
    return Page(name, width, height)


def scheme(p, value):
    """What the browser says the system's colour scheme is ('light' or 'dark')."""
    p.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": value}]})


def token(username, password):
    return api("POST", "/v1/auth/login", {"username": username, "password": password})["accessToken"]


class ThemeAndKeysSuite(unittest.TestCase):
    pages = {}
    admin = None

    @classmethod
    def setUpClass(cls):
        root = token(ADMIN, ADMIN_PASSWORD)
        cls.ids = {}
        for name, display in (("gina", "Gina Torres"), ("hank", "Hank Chen"), ("ivy", "王艾薇")):
            cls.ids[name] = api("POST", "/v1/admin/users", {"username": name, "password": name + "-password-1",
                                                             "displayName": display}, root)["id"]
        gina = token("gina", "gina-password-1")
        both = [cls.ids["hank"], cls.ids["ivy"]]
        api("POST", "/v1/conversations/group", {"name": "Launch", "members": both}, gina)
        api("POST", "/v1/conversations/group", {"name": "Product launch 🚀", "members": both}, gina)   # the README's

    @classmethod
    def tearDownClass(cls):
        for p in list(cls.pages.values()) + [cls.admin]:
            if p:
                p.quit()

    @classmethod
    def person(cls, name, conv=None):
        """`name`'s browser, logged in to the chat (so that one test's failure does not fail the next ones too), with
        `conv` open when given."""
        p = cls.pages.get(name)
        if p is None:
            p = cls.pages[name] = page(name)
        if not p.visible("#app"):
            p.d.get(URL + "/")
            p.wait("the login form or the chat", lambda: p.visible("#login-username") or p.visible("#app"))
            if p.visible("#login-username"):
                p.login_chat(name, name + "-password-1")
            p.wait_online()
        if conv and p.one("#chat-title").text != conv:
            p.open_conv(conv)
        return p

    def dark(self, p, sel="body"):
        bg, fg = p.js(LUMINANCE, sel)
        return bg < 0.05 and fg > 0.6

    def light(self, p, sel="body"):
        bg, fg = p.js(LUMINANCE, sel)
        return bg > 0.8 and fg < 0.1

    def choose_theme(self, p, select, value):
        p.js("const s = document.getElementById(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change'));", select, value)

    def message_js(self, p, text, script):
        return p.js("""
            const [text, body] = arguments;
            const li = [...document.querySelectorAll('#messages li.msg')].find((e) => e.querySelector('.body')?.textContent === text);
            return new Function('li', body)(li || null);""", text, script)

    def test_01_dark_mode_follows_the_system_setting(self):
        g = self.pages["gina"] = page("gina")
        scheme(g, "dark")
        g.d.get(URL + "/")
        g.wait("the login form", lambda: g.visible("#login-username"))
        self.assertTrue(self.dark(g), "the login page is not dark under a dark system setting")
        self.assertEqual(g.js(LOW_CONTRAST, "#login"), [])
        g.login_chat("gina", "gina-password-1")
        g.open_conv("Launch")
        for sel in ("body", "#sidebar", "#composer-input", "#dialog"):
            self.assertTrue(self.dark(g, sel), f"{sel} is not dark")
        g.send("dark or light?")
        g.wait("the message shown", lambda: g.count("dark or light?") == 1)
        self.assertEqual(g.js(LOW_CONTRAST), [])
        self.assertEqual(g.js("return document.documentElement.dataset.theme ?? null"), None)
        # The system turns light: the page follows at once, without a reload.
        scheme(g, "light")
        g.wait("the page light again", lambda: self.light(g))
        self.assertEqual(g.js(LOW_CONTRAST), [])

    def test_02_the_switch_chooses_light_or_dark_and_is_remembered(self):
        g = self.person("gina")
        scheme(g, "dark")
        g.wait("dark with the system", lambda: self.dark(g))
        self.assertEqual(g.one("#app-theme").get_attribute("value"), "system")
        options = "return [...document.querySelectorAll('#app-theme option')].map((o) => o.textContent)"
        self.assertEqual(g.js(options), ["System", "Light", "Dark"])
        # Light although the system is dark, kept across a reload.
        self.choose_theme(g, "app-theme", "light")
        g.wait("light by choice", lambda: self.light(g))
        self.assertEqual(g.js("return localStorage.getItem('warbler.theme')"), "light")
        g.d.refresh()
        g.wait("the app after reload", lambda: g.visible("#app"))
        self.assertTrue(self.light(g))
        self.assertEqual(g.one("#app-theme").get_attribute("value"), "light")
        # Back to the system's: dark again, and nothing kept.
        self.choose_theme(g, "app-theme", "system")
        g.wait("dark with the system again", lambda: self.dark(g))
        self.assertIsNone(g.js("return localStorage.getItem('warbler.theme')"))
        # Dark although the system is light, kept across a reload; readable.
        scheme(g, "light")
        g.wait("light with the system", lambda: self.light(g))
        self.choose_theme(g, "app-theme", "dark")
        g.wait("dark by choice", lambda: self.dark(g))
        g.d.refresh()
        g.wait("the app after reload", lambda: g.visible("#app"))
        g.wait_online()
        self.assertTrue(self.dark(g))
        g.open_conv("Launch")
        self.assertEqual(g.js(LOW_CONTRAST), [])
        # The choice applies before the page's modules run (no light flash first): with chat.js blocked, still dark.
        g.d.execute_cdp_cmd("Network.enable", {})
        g.d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/js/chat.js"]})
        try:
            g.d.refresh()
            self.assertFalse(g.visible("#app"), "chat.js ran")
            self.assertTrue(self.dark(g), "the saved choice waits for the modules")
        finally:
            g.d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        g.d.refresh()
        g.wait("the app after reload", lambda: g.visible("#app"))
        g.wait_online()
        g.open_conv("Launch")
        # The switch speaks Chinese too.
        select = "const s = document.getElementById('app-lang'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));"
        g.js(select, "zh-CN")
        g.wait("the choices in Chinese", lambda: g.js(options) == ["跟随系统", "浅色", "深色"])
        g.shot("20-gina-dark-zh-CN")
        g.js(select, "en")
        self.choose_theme(g, "app-theme", "system")
        g.wait("light with the system", lambda: self.light(g))

    def test_03_the_admin_console_follows_too_and_is_readable_in_both(self):
        ThemeAndKeysSuite.admin = a = page("admin-theme")
        scheme(a, "dark")
        a.login(ADMIN, ADMIN_PASSWORD, "/admin")
        a.wait("the console", lambda: a.visible("#console"))
        a.wait("the figures", lambda: a.css("#figures .figure") and a.css("#users tr"))
        self.assertTrue(self.dark(a))
        for sel in ("#console .section", "#new-username", "#admin-theme"):
            self.assertTrue(self.dark(a, sel), f"{sel} is not dark")
        self.assertEqual(a.js(LOW_CONTRAST), [])
        a.shot("21-admin-dark")
        self.choose_theme(a, "admin-theme", "light")
        a.wait("light by choice", lambda: self.light(a))
        self.assertEqual(a.js(LOW_CONTRAST), [])
        self.choose_theme(a, "admin-theme", "system")
        a.wait("dark with the system", lambda: self.dark(a))

    def test_04_enter_sends_and_shift_enter_breaks_the_line(self):
        g = self.person("gina", "Launch")
        h = self.person("hank", "Launch")
        box = g.one("#composer-input")
        one_line = g.js("return document.getElementById('composer-input').offsetHeight")
        box.send_keys("first line")
        ActionChains(g.d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        box.send_keys("second line")
        self.assertEqual(box.get_attribute("value"), "first line\nsecond line")
        self.assertEqual(g.count("first line\nsecond line"), 0, "Shift+Enter sent the message")
        self.assertGreater(g.js("return document.getElementById('composer-input').offsetHeight"), one_line, "the composer did not grow")
        box.send_keys(Keys.ENTER)
        h.wait("the two-line message at Hank", lambda: h.count("first line\nsecond line") == 1)
        lines = "return li && new Set([...(() => { const r = document.createRange(); r.selectNodeContents(li.querySelector('.body')); return r.getClientRects(); })()].map((x) => Math.round(x.top))).size"
        self.assertEqual(self.message_js(h, "first line\nsecond line", lines), 2)
        self.assertEqual(box.get_attribute("value"), "")
        g.wait("the composer one line again", lambda: g.js("return document.getElementById('composer-input').offsetHeight") == one_line)
        # An Enter that confirms an input method's composition (typing Chinese in pinyin) does not send.
        box.send_keys("拼音")
        g.js("""document.getElementById('composer-input').dispatchEvent(new KeyboardEvent('keydown',
                  {key: 'Enter', keyCode: 229, isComposing: true, bubbles: true, cancelable: true}));""")
        time.sleep(0.3)
        self.assertEqual(box.get_attribute("value"), "拼音")
        self.assertEqual(g.count("拼音"), 0)
        box.clear()

    def test_05_up_edits_my_last_message_and_escape_cancels(self):
        g, h = self.person("gina", "Launch"), self.person("hank", "Launch")
        g.send("lunch at 12?")
        g.send("the venue is booked")
        h.wait("Gina's messages", lambda: h.count("the venue is booked") == 1)
        h.send("sure")
        g.wait("Hank's answer", lambda: g.count("sure") == 1)
        box = g.one("#composer-input")
        # Up in the empty composer: my last message (not Hank's, newer) is in the composer to edit.
        box.send_keys(Keys.ARROW_UP)
        g.wait("the edit", lambda: g.visible("#edit-banner") and box.get_attribute("value") == "the venue is booked")
        # An Escape that drops an input method's composition leaves the edit alone.
        g.js("""document.getElementById('composer-input').dispatchEvent(new KeyboardEvent('keydown',
                  {key: 'Escape', keyCode: 229, isComposing: true, bubbles: true, cancelable: true}));""")
        time.sleep(0.2)
        self.assertTrue(g.visible("#edit-banner"))
        # Escape: nothing changes, the composer is empty again.
        box.send_keys(Keys.ESCAPE)
        g.wait("the edit cancelled", lambda: not g.visible("#edit-banner") and box.get_attribute("value") == "")
        time.sleep(0.5)
        self.assertFalse(self.message_js(h, "the venue is booked", "return !!li.querySelector('.edited');"))
        # Up again, change it, Enter: Hank sees the new text, marked edited.
        box.send_keys(Keys.ARROW_UP)
        g.wait("the edit again", lambda: box.get_attribute("value") == "the venue is booked")
        box.send_keys(Keys.END, Keys.BACKSPACE * len("booked"), "booked for 40")
        box.send_keys(Keys.ENTER)
        h.wait("the edit at Hank", lambda: h.count("the venue is booked for 40") == 1 and h.count("the venue is booked") == 0)
        self.assertTrue(self.message_js(h, "the venue is booked for 40", "return !!li.querySelector('.edited');"))
        self.assertFalse(g.visible("#edit-banner"))
        self.assertEqual(box.get_attribute("value"), "")
        # Up in a composer that holds text moves the caret; it edits nothing.
        box.send_keys("half typed")
        box.send_keys(Keys.ARROW_UP)
        time.sleep(0.2)
        self.assertFalse(g.visible("#edit-banner"))
        self.assertEqual(box.get_attribute("value"), "half typed")
        # An edit started from a message's Edit keeps what was typed, and gives it back when cancelled.
        self.assertTrue(g.click_in_message("lunch at 12?", "edit"))
        g.wait("the Edit button's edit", lambda: box.get_attribute("value") == "lunch at 12?")
        box.send_keys(Keys.ESCAPE)
        g.wait("the typed text back", lambda: box.get_attribute("value") == "half typed" and not g.visible("#edit-banner"))
        box.clear()

    def test_06_escape_closes_the_emoji_picker_and_a_dialog_for_good(self):
        g = self.person("gina", "Launch")
        g.send("react to this")
        g.wait("the message sent", lambda: g.status_of("react to this") in ("sent", "delivered", "read"))
        self.assertTrue(g.click_in_message("react to this", "react"))
        g.wait("the emoji picker", lambda: g.css("#messages .emoji-picker"))
        g.js("document.activeElement.blur()")   # as after a click on React: the composer does not have the key
        ActionChains(g.d).send_keys(Keys.ESCAPE).perform()
        g.wait("the picker closed", lambda: not g.css("#messages .emoji-picker"))
        # A dialog closed with Escape leaves nothing behind: the next dialog's OK runs only its own action (it used
        # to run the closed one's too, here opening a direct chat with Ivy).
        g.one("#new-chat").click()
        g.wait("the new-chat dialog", lambda: g.visible("#dialog-username"))
        g.one("#dialog-username").send_keys("ivy")
        ActionChains(g.d).send_keys(Keys.ESCAPE).perform()
        g.wait("the dialog closed", lambda: not g.one("#dialog").is_displayed())
        g.one("#new-group").click()
        g.dialog({"name": "Design review", "members": "hank"})
        g.wait("the new group open", lambda: g.one("#chat-title").text == "Design review")
        time.sleep(1)
        convs = api("GET", "/v1/conversations", token=token("gina", "gina-password-1"))
        self.assertEqual([c for c in convs if c.get("peer") == self.ids["ivy"]], [], "the cancelled new-chat dialog opened a chat")
        self.assertEqual(g.one("#chat-title").text, "Design review")

    def test_07_emoji_are_drawn_in_colour(self):
        g, h = self.person("gina", "Launch"), self.person("hank", "Launch")
        g.send("😂 ❤ 🎉 done")
        h.wait("the emoji message at Hank", lambda: h.count("😂 ❤ 🎉 done") == 1)
        self.assertEqual(h.js(COLOUR_EMOJI, "#messages li.msg .body", "😂 ❤ 🎉 done", ["😂", "❤", "🎉"]), 3)
        # The quick reactions too.
        self.assertTrue(h.click_in_message("😂 ❤ 🎉 done", "react"))
        h.wait("the emoji picker", lambda: h.css("#messages .emoji-picker button"))
        self.assertEqual(h.js(COLOUR_EMOJI, "#messages .emoji-picker button", None, ["👍", "❤️", "😂", "🎉", "😮", "🙏"]), 6)
        h.js("document.querySelector('#messages .emoji-picker button[data-emoji=\"🎉\"]').click()")

    def test_08_the_readme_screenshots(self):
        readme = "Product launch 🚀"
        g, h, i = (self.person(name, readme) for name in ("gina", "hank", "ivy"))
        self.choose_theme(g, "app-theme", "system")
        # Gina posts the group's announcement.
        g.one("#members-btn").click()
        g.wait("the owner's tools", lambda: g.visible("#edit-announcement"))
        g.one("#edit-announcement").click()
        g.dialog({"text": "发布会周五 15:00 · Launch on Friday, 3 pm"})
        g.one("#close-members").click()
        h.send("Slides are ready 🎉")
        i.wait("Hank's slides", lambda: i.count("Slides are ready 🎉") == 1)
        i.send("我来准备演示环境，周四晚上检查一遍。")
        g.wait("Ivy's message", lambda: g.count("我来准备演示环境，周四晚上检查一遍。") == 1)
        # Gina replies to Hank, mentioning him, over two lines.
        self.assertTrue(g.click_in_message("Slides are ready 🎉", "reply"))
        box = g.one("#composer-input")
        box.send_keys("@ha")
        g.wait("the mention suggestion", lambda: g.visible("#mention-list"))
        box.send_keys(Keys.ENTER)
        box.send_keys("great, thanks!")
        ActionChains(g.d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        box.send_keys("Could you share them in this group?")
        box.send_keys(Keys.ENTER)
        h.wait("Gina's reply", lambda: h.count("@Hank Chen great, thanks!\nCould you share them in this group?") == 1)
        for p, emoji in ((h, "👍"), (i, "❤️")):
            p.wait("the message", lambda p=p: p.count("我来准备演示环境，周四晚上检查一遍。") == 1)
            self.assertTrue(p.click_in_message("我来准备演示环境，周四晚上检查一遍。", "react"))
            p.wait("the emoji picker", lambda p=p: p.css("#messages .emoji-picker button"))
            p.js("document.querySelector(`#messages .emoji-picker button[data-emoji='${arguments[0]}']`).click()", emoji)
        chips = "return li && [...li.querySelectorAll('.reaction')].map((c) => c.textContent).sort()"
        g.wait("both reactions at Gina", lambda: self.message_js(g, "我来准备演示环境，周四晚上检查一遍。", chips) == ["❤️ 1", "👍 1"])
        h.send("Sure — posting them now 👍")
        g.wait("Hank's answer", lambda: g.count("Sure — posting them now 👍") == 1)
        g.wait("read by all", lambda: g.status_of("@Hank Chen great, thanks!\nCould you share them in this group?") == "read")
        g.js("document.activeElement.blur(); document.getElementById('messages').scrollTop = 1e9;")
        g.wait("the list redrawn", lambda: g.conv_item(readme) is not None)
        time.sleep(0.5)
        scheme(g, "light")
        g.wait("light", lambda: self.light(g))
        g.shot("00-readme-light")
        self.assertEqual(g.js(LOW_CONTRAST), [])
        scheme(g, "dark")
        g.wait("dark", lambda: self.dark(g))
        time.sleep(0.3)
        g.shot("00-readme-dark")
        self.assertEqual(g.js(LOW_CONTRAST), [])
        scheme(g, "light")

    def test_09_no_content_security_policy_violations(self):
        for p in list(self.pages.values()) + [self.admin]:
            if p:
                self.assertEqual(p.csp_violations(), [], f"{p.name}'s browser reported CSP violations")


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
