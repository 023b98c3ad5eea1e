"""Application screens for GUI grounding, generated as HTML from a seed.

Each kind of application lays out its widgets with randomised texts, order, colours and font size.
Every element an instruction can refer to carries ``data-desc`` (how the instruction names it) and
``data-how`` (``text``, ``icon``, ``position`` or ``widget``); the renderer reads their boxes from
the page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np

KINDS_TRAIN = ("mail", "settings", "files", "shop", "dashboard", "login")
KINDS_HELD_OUT = ("calendar", "chat")
"""Application kinds only ``test_ood`` shows."""

# Icons are Font Awesome 4.7 glyphs (Debian's fonts-font-awesome, a system font Chromium finds by name):
# meaning -> the glyph's code point.
ICONS = {"settings": "\uf013", "delete": "\uf1f8", "search": "\uf002", "favourite": "\uf004", "star": "\uf005",
         "edit": "\uf040", "home": "\uf015", "add": "\uf067", "refresh": "\uf021", "download": "\uf019",
         "upload": "\uf093", "share": "\uf1e0", "attach": "\uf0c6", "menu": "\uf0c9", "close": "\uf00d",
         "next": "\uf054", "previous": "\uf053", "notifications": "\uf0f3", "print": "\uf02f", "help": "\uf128"}
ICON_FONT = Path("/usr/share/fonts/truetype/font-awesome/fontawesome-webfont.ttf")
PEOPLE = ("Ana Silva", "Ben Okafor", "Chen Wei", "Dara Kim", "Eli Novak", "Fatima Khan", "Gus Berg", "Hana Sato",
          "Ivan Petrov", "Jade Moreau", "Kofi Mensah", "Lena Braun", "Mateo Ruiz", "Nora Lind", "Omar Haddad")
SUBJECTS = ("Quarterly report", "Lunch on Friday?", "Invoice #2291", "Team offsite plan", "Password reset",
            "Design review notes", "Flight confirmation", "Welcome aboard", "Budget draft v3", "Weekly sync moved",
            "Your order has shipped", "Contract renewal", "Photos from the trip", "Bug triage", "Holiday schedule")
FILES = ("notes.txt", "budget.xlsx", "photo_001.jpg", "slides.pdf", "draft.docx", "backup.zip", "logo.png",
         "report.pdf", "data.csv", "song.mp3", "video.mp4", "readme.md", "invoice.pdf", "map.svg", "todo.txt")
PRODUCTS = ("Trail running shoes", "Wool scarf", "Ceramic mug", "Desk lamp", "Backpack 20 L", "Water bottle",
            "Bluetooth speaker", "Notebook set", "Rain jacket", "Coffee grinder", "Yoga mat", "Sunglasses")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
ACCENTS = ("#2f6fdf", "#1b8a5a", "#b5432f", "#7a3fb8", "#c07a12", "#0f7c8c")
SIDES = ("#2d3e50", "#263238", "#3b2f4a", "#1f3b2f", "#40332a")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


class Screen:
    """Builds one screen's HTML; the helpers tag elements for instructions."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, items, count: int | None = None):
        if count is None:
            return items[int(self.rng.integers(len(items)))]
        return [items[int(i)] for i in self.rng.choice(len(items), size=count, replace=False)]

    @staticmethod
    def tag(desc: str, how: str) -> str:
        return f'data-desc="{_e(desc)}" data-how="{how}"'

    def button(self, text: str, *, primary: bool = False, desc: str | None = None) -> str:
        return (f'<button class="{"primary" if primary else ""}" '
                f'{self.tag(desc or f"the {text!r} button", "text")}>{_e(text)}</button>')

    def icon(self, meaning: str) -> str:
        return (f'<button class="icon fa" aria-label="{meaning}" '
                f'{self.tag(f"the icon that means {meaning!r}", "icon")}>{ICONS[meaning]}</button>')

    def field(self, placeholder: str, what: str, kind: str = "text") -> str:
        return (f'<input type="{kind}" placeholder="{_e(placeholder)}" '
                f'{self.tag(f"the {what} field", "widget")}>')

    def checkbox(self, label: str) -> str:
        return (f'<label><input type="checkbox" {self.tag(f"the checkbox for {label!r}", "widget")}> '
                f"{_e(label)}</label>")

    def icons(self, count: int) -> str:
        return "".join(self.icon(meaning) for meaning in self.pick(tuple(ICONS), count))

    def style(self) -> str:
        return (f"--accent:{self.pick(ACCENTS)};--side:{self.pick(SIDES)};--font:{int(self.rng.integers(13, 17))}px;"
                f"--dir:{self.pick(('row', 'row-reverse'))};--cols:{int(self.rng.integers(2, 5))}")

    def sidebar(self, links: list[str]) -> str:
        items = "".join(f'<a href="#" {self.tag(f"the {link!r} link in the sidebar", "text")}>{_e(link)}</a>'
                        for link in links)
        return f'<nav class="sidebar">{items}</nav>'

    def rows(self, entries: list[str], noun: str) -> str:
        return "".join(f'<div class="row" {self.tag(f"the {ORDINALS[i]} {noun} in the list", "position")}>{entry}</div>'
                       for i, entry in enumerate(entries))


def mail(s: Screen) -> str:
    senders, subjects = s.pick(PEOPLE, 6), s.pick(SUBJECTS, 6)
    entries = [f'<b class="grow">{_e(who)}</b><span class="grow">{_e(what)}</span><span class="muted">{9 + i}:0{i}</span>'
               for i, (who, what) in enumerate(zip(senders, subjects))]
    tools = [s.button("Compose", primary=True), s.button("Archive"), s.button("Reply"), s.button("Forward")]
    s.rng.shuffle(tools)
    return (f'<div class="app">{s.sidebar(["Inbox", "Starred", "Sent", "Drafts", "Spam"])}<main class="main">'
            f'<div class="toolbar">{"".join(tools)}{s.field("Search mail", "mail search", "search")}{s.icons(3)}</div>'
            f'<div class="list">{s.rows(entries, "message")}</div></main></div>')


def settings(s: Screen) -> str:
    options = s.pick(("Dark mode", "Email notifications", "Auto-update", "Two-factor login", "Location access",
                      "Sync contacts", "Sound effects", "Show previews"), 5)
    entries = [f'<span class="grow">{_e(option)}</span>{s.checkbox(option)}' for option in options]
    return (f'<div class="app">{s.sidebar(["Account", "Privacy", "Display", "Devices", "About"])}<main class="main">'
            f'<h2>Settings</h2><div class="list">{"".join(f"<div class=row>{e}</div>" for e in entries)}</div>'
            f'<div class="toolbar">{s.field("Display name", "display name")}'
            f'{s.button("Save changes", primary=True)}{s.button("Cancel")}{s.icons(2)}</div></main></div>')


def files(s: Screen) -> str:
    names = s.pick(FILES, 7)
    entries = [f'<span class="grow">{_e(name)}</span><span class="muted">{int(s.rng.integers(2, 900))} KB</span>'
               for name in names]
    return (f'<div class="app">{s.sidebar(["My files", "Shared", "Recent", "Trash"])}<main class="main">'
            f'<div class="toolbar">{s.button("New folder")}{s.button("Upload", primary=True)}'
            f'{s.field("Search files", "file search", "search")}{s.icons(4)}</div>'
            f'<div class="list">{s.rows(entries, "file")}</div></main></div>')


def shop(s: Screen) -> str:
    cards = []
    for name in s.pick(PRODUCTS, 6):
        price = f"${int(s.rng.integers(5, 200))}.{int(s.rng.integers(0, 100)):02d}"
        cards.append(f'<div class="card"><b>{_e(name)}</b><span class="muted">{price}</span>'
                     f'{s.button("Add to cart", desc=f"the Add to cart button of the {name!r}")}</div>')
    return (f'<div class="app"><main class="main"><div class="toolbar">{s.field("Search products", "product search", "search")}'
            f'{s.button("Search", primary=True)}{s.icons(3)}{s.button("Checkout")}</div>'
            f'<div class="cards">{"".join(cards)}</div></main></div>')


def dashboard(s: Screen) -> str:
    metrics = s.pick(("Revenue", "Visitors", "Signups", "Churn", "Orders", "Refunds", "Uptime", "Tickets"), 6)
    cards = "".join(f'<div class="card"><span class="muted">{_e(m)}</span><b>{int(s.rng.integers(10, 9999))}</b>'
                    f'{s.button("Details", desc=f"the Details button of the {m!r} card")}</div>' for m in metrics)
    period = (f'<select {s.tag("the period drop-down", "widget")}><option>Last 7 days</option>'
              "<option>Last 30 days</option></select>")
    return (f'<div class="app">{s.sidebar(["Overview", "Reports", "Customers", "Billing"])}<main class="main">'
            f'<div class="toolbar">{period}{s.button("Export")}{s.icons(3)}</div>'
            f'<div class="cards">{cards}</div></main></div>')


def login(s: Screen) -> str:
    site = s.pick(("Northwind", "Acme Cloud", "Bluebird Bank", "Orbit Mail", "Pinecone"))
    return (f'<div class="form"><h2>Sign in to {site}</h2>{s.field("Email address", "email")}'
            f'{s.field("Password", "password", "password")}{s.checkbox("Remember me")}'
            f'{s.button("Sign in", primary=True)}<a href="#" {s.tag("the Forgot password link", "text")}>'
            f'Forgot password?</a>{s.button("Create account")}</div>')


def calendar(s: Screen) -> str:
    days = []
    for day in range(1, 29):
        event = s.pick(SUBJECTS) if s.rng.random() < 0.25 else ""
        days.append(f'<div class="day" {s.tag(f"day {day} in the calendar", "position")}>{day}<br>'
                    f'<span class="muted">{_e(event)}</span></div>')
    return (f'<div class="app"><main class="main"><div class="toolbar">{s.icon("previous")}'
            f'<b>{s.pick(("March", "June", "October"))}</b>{s.icon("next")}{s.button("Today")}'
            f'{s.button("New event", primary=True)}{s.icons(2)}</div><div class="grid7">{"".join(days)}</div></main></div>')


def chat(s: Screen) -> str:
    friend = s.pick(PEOPLE)
    lines = s.pick(("Are we still on for tonight?", "Sent you the file.", "Thanks!", "Can you call me?",
                    "Running 5 minutes late", "Great idea", "See you at 8", "Which room?"), 5)
    bubbles = "".join(f'<div class="bubble {"mine" if i % 2 else ""}" '
                      f'{s.tag(f"the {ORDINALS[i]} message in the conversation", "position")}>{_e(text)}</div>'
                      for i, text in enumerate(lines))
    return (f'<div class="phone"><div class="toolbar" style="padding:8px">{s.icon("previous")}<b class="grow">'
            f'{_e(friend)}</b>{s.icons(2)}</div><div class="main">{bubbles}</div><div class="toolbar" style="padding:8px">'
            f'{s.field("Type a message", "message")}{s.button("Send", primary=True)}{s.icon("attach")}</div>'
            f'<div class="tabbar">{s.icon("home")}{s.icon("search")}{s.icon("settings")}</div></div>')


KINDS: dict[str, Callable[[Screen], str]] = {"mail": mail, "settings": settings, "files": files, "shop": shop,
                                              "dashboard": dashboard, "login": login, "calendar": calendar, "chat": chat}


def screen_html(kind: str, seed: int, css: str) -> str:
    screen = Screen(np.random.default_rng(seed))
    body = KINDS[kind](screen)
    return (f'<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head>'
            f'<body style="{screen.style()}">{body}</body></html>')
