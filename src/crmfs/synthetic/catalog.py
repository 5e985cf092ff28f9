"""Product catalogue and the item-choice model shared by views, carts and purchases."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from crmfs.synthetic import names
from crmfs.synthetic.common import F64, I64, Window, event_ids, timestamps

ZIPF_EXPONENT = 1.1  # popularity of the k-th most popular item ~ 1 / k**1.1
GLOBAL_SHARE = 0.15  # share of item picks driven by overall popularity, not personal taste

CATEGORIES: tuple[str, ...] = tuple(names.PRODUCT_CATEGORIES)


@dataclass(frozen=True)
class Catalog:
    """Products as parallel arrays; index ``k`` is item ``item_ids[k]``."""

    item_ids: list[str]
    product_names: list[str]
    category: I64  # index into CATEGORIES
    price: F64  # USD, always ending in .99 so price x quantity stays exact to the cent
    popularity: F64  # Zipf weights, sum to 1

    def __len__(self) -> int:
        return len(self.item_ids)

    def sample(self, rng: np.random.Generator, category_pref: F64, person: I64) -> I64:
        """One item per entry of ``person`` (row indices into ``category_pref``).

        A pick is mostly "a category this person likes, then a popular item in it", with a share
        of purely popularity-driven picks. Vectorised per category: the event tables hold about a
        million picks at scale 20k.
        """
        n, n_cat = len(person), len(CATEGORIES)
        # Category by inverse CDF on one flat, increasing array: person p's cumulative
        # preferences are shifted by p, so a single searchsorted serves every person without
        # materialising an (events x categories) matrix.
        cum = np.cumsum(category_pref, axis=1)
        cum /= cum[:, -1:]
        flat = (np.arange(len(cum))[:, None] + cum).ravel()
        idx = np.searchsorted(flat, person + rng.random(n), side="right")
        cat = np.clip(idx - person * n_cat, 0, n_cat - 1)
        items = np.empty(n, dtype=np.int64)
        draws = rng.random(n)
        for c in range(len(CATEGORIES)):
            rows = np.flatnonzero(cat == c)
            members = np.flatnonzero(self.category == c)
            cum_pop = np.cumsum(self.popularity[members])
            pick = np.searchsorted(cum_pop, draws[rows] * cum_pop[-1], side="right")
            items[rows] = members[np.minimum(pick, len(members) - 1)]
        glob = rng.random(n) < GLOBAL_SHARE
        cum_all = np.cumsum(self.popularity)
        pick = np.searchsorted(cum_all, rng.random(int(glob.sum())) * cum_all[-1], side="right")
        items[glob] = np.minimum(pick, len(self) - 1)
        return items


def build_catalog(rng: np.random.Generator, scale: int) -> Catalog:
    """A catalogue sized with the population (100 to 2,000 items)."""
    n = min(2_000, max(100, scale // 10))
    n_cat = len(CATEGORIES)
    # Round-robin categories so each has items even in the smallest catalogue, then shuffle.
    category = rng.permutation(np.arange(n, dtype=np.int64) % n_cat)
    typical = np.array([names.PRODUCT_CATEGORIES[c][1] for c in CATEGORIES])
    price = np.floor(typical[category] * rng.lognormal(0.0, 0.5, size=n)) + 0.99
    # Popularity rank is independent of id order, so popular items are not simply SKU-00001...
    rank = rng.permutation(n) + 1
    weight = 1.0 / rank.astype(np.float64) ** ZIPF_EXPONENT
    adjective = rng.integers(0, len(names.PRODUCT_ADJECTIVES), size=n)
    noun_draw = rng.integers(0, 1_000, size=n)
    color = rng.integers(0, len(names.PRODUCT_COLORS), size=n)
    product_names: list[str] = []
    for k in range(n):
        nouns = names.PRODUCT_CATEGORIES[CATEGORIES[int(category[k])]][0]
        product_names.append(
            f"{names.PRODUCT_ADJECTIVES[int(adjective[k])]} "
            f"{nouns[int(noun_draw[k]) % len(nouns)]} ({names.PRODUCT_COLORS[int(color[k])]})"
        )
    return Catalog(
        item_ids=[f"SKU-{k + 1:05d}" for k in range(n)],
        product_names=product_names,
        category=category,
        price=price,
        popularity=weight / weight.sum(),
    )


def products_table(rng: np.random.Generator, catalog: Catalog, window: Window) -> pa.Table:
    """The ``products`` table.

    Every product row is stamped with the start of the window: the catalogue as loaded before
    any event, so a point-in-time lookup of a product's price never comes up empty.
    """
    ids, _ = event_ids(rng, "prd-ev-", len(catalog))
    return pa.table(
        {
            "item_id": pa.array(catalog.item_ids, pa.string()),
            "name": pa.array(catalog.product_names, pa.string()),
            "category": pa.array([CATEGORIES[int(c)] for c in catalog.category], pa.string()),
            "price": pa.array(catalog.price, pa.float64()),
            "event_id": ids,
            "updated_at": timestamps(np.full(len(catalog), window.start_us, dtype=np.int64)),
        }
    )
