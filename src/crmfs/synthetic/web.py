"""Web sessions (``web_events``) and the orders they lead to (``purchases``).

Fully vectorised: at scale 20k these two tables hold most of the ~1M generated events. Sessions
are the unit of behaviour: a person opens a session on one of their devices (cookies), browses a
few pages mostly within the categories they like, sometimes adds items to the cart, and some
sessions with a cart end in an order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crmfs.synthetic.catalog import CATEGORIES, Catalog
from crmfs.synthetic.common import (
    I64,
    US_PER_MINUTE,
    US_PER_SECOND,
    Window,
    segment_offsets,
    shuffled_ids,
)
from crmfs.synthetic.events import deliver
from crmfs.synthetic.people import Population, ascii_slug

SESSIONS_PER_PERSON = 9.0  # over the whole window, for a person of average activity
MEAN_EVENTS_PER_SESSION = 5.0
MEAN_GAP_US = 45 * US_PER_SECOND  # between clicks within a session
COOKIES_PER_PERSON_P = (0.5, 0.35, 0.15)  # one, two or three devices
# A cookie never logs in, is logged in from its first event, or logs in during the window.
LOGIN_MODE_P = (0.25, 0.35, 0.4)
EVENT_TYPES = ("page_view", "product_view", "add_to_cart")
EVENT_TYPE_P = (0.4, 0.45, 0.15)  # after the landing page, which is always a page view
STATIC_PAGES = ("/", "/search", "/account", "/help", "/deals", "/cart")
CATEGORY_PAGE_SHARE = 0.4  # page views that browse a category rather than a static page
MEAN_CHECKOUT_US = 4 * US_PER_MINUTE
MAX_QUANTITY = 5


@dataclass(frozen=True)
class WebOutput:
    """The two tables plus the owner of every cookie that appears in ``web_events``."""

    web_events: pa.Table
    purchases: pa.Table
    cookies: list[tuple[str, int]]  # (cookie_id, person index), sorted by cookie id


def _cookie_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct random-looking cookie ids."""
    while True:
        raw = rng.integers(0, 2**63, size=n, dtype=np.int64)
        if len(np.unique(raw)) == n:  # a collision is astronomically unlikely, but be exact
            return [f"ck-{int(x):016x}" for x in raw]


def build_web(
    rng: np.random.Generator,
    pop: Population,
    catalog: Catalog,
    primary_contact: list[str | None],
    window: Window,
) -> WebOutput:
    """Generate ``web_events`` and ``purchases`` for everyone with a crm_a contact."""
    active = np.array([i for i, c in enumerate(primary_contact) if c is not None], dtype=np.int64)
    n_cookies = rng.choice(3, size=len(active), p=COOKIES_PER_PERSON_P) + 1
    cookie_first = segment_offsets(n_cookies)
    cookie_person = np.repeat(active, n_cookies)
    cookie_ids = _cookie_ids(rng, len(cookie_person))
    mode = rng.choice(3, size=len(cookie_person), p=LOGIN_MODE_P)
    never, always = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    login_at = np.where(mode == 0, never, window.uniform(rng, len(cookie_person)))
    login_at[mode == 1] = always

    # Sessions: heavy-tailed count per person, each on one of that person's devices.
    n_sessions = rng.poisson(pop.activity[active] * SESSIONS_PER_PERSON)
    sess_owner = np.repeat(np.arange(len(active)), n_sessions)  # index into ``active``
    sess_person = active[sess_owner]
    pick = (rng.random(len(sess_owner)) * n_cookies[sess_owner]).astype(np.int64)
    sess_cookie = cookie_first[sess_owner] + pick
    sess_start = window.uniform(rng, len(sess_owner))

    # Events within sessions: landing page first, then clicks separated by exponential gaps.
    n_events = rng.geometric(1.0 / MEAN_EVENTS_PER_SESSION, size=len(sess_owner))
    ev_sess = np.repeat(np.arange(len(sess_owner)), n_events)
    first = segment_offsets(n_events)
    gaps = rng.exponential(MEAN_GAP_US, size=len(ev_sess)).astype(np.int64)
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    ev_time = sess_start[ev_sess] + elapsed - np.repeat(elapsed[first], n_events)
    ev_type = rng.choice(len(EVENT_TYPES), size=len(ev_sess), p=EVENT_TYPE_P)
    ev_type[first] = 0
    ev_person = sess_person[ev_sess]
    item = catalog.sample(rng, pop.category_pref, ev_person)
    # People add to the cart what they were just looking at.
    follows_view = np.zeros(len(ev_sess), dtype=np.bool_)
    follows_view[1:] = (ev_type[:-1] == 1) & (ev_sess[1:] == ev_sess[:-1])
    copy = np.flatnonzero((ev_type == 2) & follows_view)
    item[copy] = item[copy - 1]
    session_end = ev_time[first + n_events - 1]

    keep = np.flatnonzero(ev_time <= window.end_us)  # the rest happens after the extract
    purchases = _purchases(
        rng, pop, catalog, primary_contact, window, keep, ev_type, ev_sess, item, sess_person,
        session_end,
    )  # fmt: skip
    ev_time, ev_type, ev_sess, item = ev_time[keep], ev_type[keep], ev_sess[keep], item[keep]
    ev_person, ev_cookie = ev_person[keep], sess_cookie[ev_sess]

    # Pages: one dictionary of static, category and product pages, indexed per event.
    pages = [*STATIC_PAGES]
    pages += [f"/c/{ascii_slug(c)}" for c in CATEGORIES]
    pages += [f"/p/{i.lower()}" for i in catalog.item_ids]
    static = rng.integers(0, len(STATIC_PAGES), size=len(keep))
    category_page = len(STATIC_PAGES) + catalog.category[item]
    browse = rng.random(len(keep)) < CATEGORY_PAGE_SHARE
    page = np.where(browse, category_page, static)
    page = np.where(ev_type == 1, len(STATIC_PAGES) + len(CATEGORIES) + item, page)
    page = np.where(ev_type == 2, STATIC_PAGES.index("/cart"), page)

    logged_in = ev_time >= login_at[ev_cookie]
    contacts = pa.array(primary_contact, pa.string())
    payload = pa.table(
        {
            "cookie_id": pc.take(pa.array(cookie_ids, pa.string()), pa.array(ev_cookie)),
            "customer_id": pc.take(contacts, pa.array(ev_person, mask=~logged_in)),
            "page": pc.take(pa.array(pages, pa.string()), pa.array(page)),
            "item_id": pc.take(
                pa.array(catalog.item_ids, pa.string()), pa.array(item, mask=ev_type == 0)
            ),
            "event_type": pc.take(pa.array(EVENT_TYPES, pa.string()), pa.array(ev_type)),
        }
    )
    web_events, rows = deliver(rng, payload, ev_time, window, "web-")
    seen = np.unique(ev_cookie[rows])
    cookies = sorted((cookie_ids[int(c)], int(cookie_person[c])) for c in seen)
    return WebOutput(web_events=web_events, purchases=purchases, cookies=cookies)


def _purchases(
    rng: np.random.Generator,
    pop: Population,
    catalog: Catalog,
    primary_contact: list[str | None],
    window: Window,
    keep: I64,
    ev_type: I64,
    ev_sess: I64,
    item: I64,
    sess_person: I64,
    session_end: I64,
) -> pa.Table:
    """Orders from sessions with a cart: each converting session buys its distinct cart items."""
    carts = keep[ev_type[keep] == 2]
    has_cart = np.zeros(len(sess_person), dtype=np.bool_)
    has_cart[ev_sess[carts]] = True
    converts = has_cart & (rng.random(len(sess_person)) < pop.conversion[sess_person])
    lines = carts[converts[ev_sess[carts]]]
    # One order line per distinct item in the cart, however often it was added.
    key = ev_sess[lines] * len(catalog) + item[lines]
    lines = lines[np.unique(key, return_index=True)[1]]
    line_sess = ev_sess[lines]
    order_sess, line_order = np.unique(line_sess, return_inverse=True)
    checkout = (
        session_end[order_sess]
        + 30 * US_PER_SECOND
        + rng.exponential(MEAN_CHECKOUT_US, size=len(order_sess)).astype(np.int64)
    )
    line_time = checkout[line_order]
    order_ids = np.array(shuffled_ids(rng, "ORD-", len(order_sess), width=7), dtype=object)
    valid = line_time <= window.end_us  # orders placed after the extract are not in it
    lines, line_sess, line_time = lines[valid], line_sess[valid], line_time[valid]
    line_order = line_order[valid]

    line_item = item[lines]
    quantity = np.minimum(rng.geometric(0.75, size=len(lines)), MAX_QUANTITY)
    # Prices end in .99, so rounding to the cent only removes binary floating-point error.
    amount = np.round(catalog.price[line_item] * quantity, 2)
    contacts = pa.array(primary_contact, pa.string())
    payload = pa.table(
        {
            "customer_id": pc.take(contacts, pa.array(sess_person[line_sess])),
            "order_id": pa.array(order_ids[line_order].tolist(), pa.string()),
            "item_id": pc.take(pa.array(catalog.item_ids, pa.string()), pa.array(line_item)),
            "quantity": pa.array(quantity, pa.int64()),
            "amount": pa.array(amount, pa.float64()),
            "currency": pa.array(["USD"] * len(lines), pa.string()),
        }
    )
    return deliver(rng, payload, line_time, window, "pur-")[0]
