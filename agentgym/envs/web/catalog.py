"""A shop catalog generated from attribute grammars, and shopping instructions with WebShop's reward.

Products are (category, brand, material, attributes, options, price), deterministic from a seed.
Instructions describe a target product by category, some attributes, one choice per option and a
price bound; the reward of a purchase is WebShop's: the share of requested attributes, options and
price bound the bought item meets, times whether it is the requested kind of product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

CATEGORIES: dict[str, dict[str, Any]] = {
    "running shoes": {"dept": "shoes", "attrs": ("lightweight", "waterproof", "breathable", "non-slip", "cushioned"),
                      "options": {"size": ("7", "8", "9", "10", "11"), "color": ("black", "white", "blue", "red")}},
    "hiking boots": {"dept": "shoes", "attrs": ("waterproof", "ankle support", "leather", "non-slip", "insulated"),
                     "options": {"size": ("7", "8", "9", "10", "11", "12"), "color": ("brown", "black", "olive")}},
    "t-shirt": {"dept": "clothing", "attrs": ("cotton", "slim fit", "quick dry", "organic", "v-neck"),
                "options": {"size": ("small", "medium", "large", "x-large"), "color": ("white", "black", "navy", "grey")}},
    "rain jacket": {"dept": "clothing", "attrs": ("waterproof", "hooded", "packable", "lightweight", "windproof"),
                    "options": {"size": ("small", "medium", "large"), "color": ("yellow", "green", "black")}},
    "coffee beans": {"dept": "grocery", "attrs": ("organic", "fair trade", "dark roast", "decaf", "whole bean"),
                     "options": {"weight": ("250 g", "500 g", "1 kg"), "flavor": ("classic", "hazelnut", "vanilla")}},
    "green tea": {"dept": "grocery", "attrs": ("organic", "loose leaf", "caffeine free", "jasmine", "matcha"),
                  "options": {"count": ("20 bags", "50 bags", "100 bags"), "flavor": ("plain", "mint", "lemon")}},
    "desk lamp": {"dept": "home", "attrs": ("dimmable", "led", "usb charging", "adjustable arm", "touch control"),
                  "options": {"color": ("black", "white", "silver"), "finish": ("matte", "glossy")}},
    "bath towel": {"dept": "home", "attrs": ("cotton", "quick dry", "oversized", "hypoallergenic", "bamboo"),
                   "options": {"color": ("white", "grey", "blue", "beige"), "pack": ("1 pack", "2 pack", "4 pack")}},
    "phone case": {"dept": "electronics", "attrs": ("shockproof", "slim", "clear", "magnetic", "wallet"),
                   "options": {"model": ("model a", "model b", "model c"), "color": ("black", "clear", "pink")}},
    "headphones": {"dept": "electronics", "attrs": ("wireless", "noise cancelling", "over ear", "foldable", "bass boost"),
                   "options": {"color": ("black", "white", "blue"), "connection": ("bluetooth", "wired")}},
    "yoga mat": {"dept": "sports", "attrs": ("non-slip", "extra thick", "eco friendly", "foldable", "lightweight"),
                 "options": {"color": ("purple", "blue", "black", "green"), "thickness": ("4 mm", "6 mm", "8 mm")}},
    "water bottle": {"dept": "sports", "attrs": ("insulated", "bpa free", "leak proof", "stainless steel", "collapsible"),
                     "options": {"capacity": ("500 ml", "750 ml", "1 l"), "color": ("black", "teal", "orange")}},
}
HELD_OUT_CATEGORIES = ("green tea", "bath towel", "water bottle")
"""Categories whose products are only ever the target of ``test_ood`` instructions."""
BRANDS = ("Northwind", "Alder & Co", "Kestrel", "Bluefin", "Maple Lane", "Orbit", "Pinecrest", "Solstice",
          "Tidewater", "Everly", "Granite", "Lumen")
MATERIALS = ("classic", "premium", "essential", "pro", "eco", "ultra", "everyday", "signature")


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    attrs: tuple[str, ...]
    options: dict[str, tuple[str, ...]] = field(hash=False)
    price: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "category": self.category, "attrs": list(self.attrs),
                "options": {k: list(v) for k, v in self.options.items()}, "price": self.price}


@lru_cache(maxsize=4)
def catalog(seed: int = 0, per_category: int = 250) -> tuple[Product, ...]:
    """``per_category`` products of every category (3,000 by default)."""
    rng = np.random.default_rng(seed)
    products = []
    for category, spec in CATEGORIES.items():
        for index in range(per_category):
            brand, line = BRANDS[int(rng.integers(len(BRANDS)))], MATERIALS[int(rng.integers(len(MATERIALS)))]
            attrs = tuple(sorted(str(a) for a in rng.choice(spec["attrs"], size=int(rng.integers(1, 4)), replace=False)))
            options = {name: tuple(str(v) for v in rng.choice(values, size=int(rng.integers(2, len(values) + 1)),
                                                              replace=False))
                       for name, values in spec["options"].items()}
            price = float(round(rng.uniform(8, 160), 2))
            name = f"{brand} {line} {category} - {', '.join(attrs)}"
            products.append(Product(f"P{len(products):05d}", name, category, attrs, options, price))
    return tuple(products)


@dataclass(frozen=True)
class Goal:
    id: str
    product_id: str
    category: str
    attrs: tuple[str, ...]
    options: dict[str, str] = field(hash=False)
    price_bound: float
    text: str


def make_goal(product: Product, rng: np.random.Generator, goal_id: str) -> Goal:
    attrs = tuple(sorted(str(a) for a in rng.choice(product.attrs, size=int(rng.integers(1, len(product.attrs) + 1)),
                                                    replace=False)))
    options = {name: str(rng.choice(values)) for name, values in product.options.items()}
    bound = float(np.ceil(product.price / 10) * 10 + 10 * int(rng.integers(0, 3)))
    wanted = ", ".join(f"{name} {value}" for name, value in options.items())
    text = f"I need {' and '.join(attrs)} {product.category} with {wanted}, and price lower than {bound:.0f} dollars"
    return Goal(goal_id, product.id, product.category, attrs, options, bound, text)


def purchase_reward(goal: Goal, product: Product, chosen: dict[str, str]) -> float:
    """WebShop's reward: (attributes met + options met + price within bound) / their count, times 1 if
    the product is of the requested category (else 0)."""
    if product.category != goal.category:
        return 0.0
    met = sum(attr in product.attrs for attr in goal.attrs)
    met += sum(chosen.get(name) == value for name, value in goal.options.items())
    met += product.price <= goal.price_bound
    return met / (len(goal.attrs) + len(goal.options) + 1)


SPLIT_GOALS = {"train": (0, 2000), "dev": (2000, 2200), "test": (2200, 2500), "test_ood": (2500, 2800)}


@lru_cache(maxsize=8)
def goals(split: str) -> tuple[Goal, ...]:
    """Instructions of a split; each goal's number seeds it, so splits are disjoint by construction and
    ``test_ood`` targets only held-out categories."""
    products = catalog()
    seen = [p for p in products if p.category not in HELD_OUT_CATEGORIES]
    held = [p for p in products if p.category in HELD_OUT_CATEGORIES]
    pool = held if split == "test_ood" else seen
    start, stop = SPLIT_GOALS[split]
    out = []
    for number in range(start, stop):
        rng = np.random.default_rng(number)
        out.append(make_goal(pool[int(rng.integers(len(pool)))], rng, f"goal-{number}"))
    return tuple(out)
