"""A seeded generator of daily unit sales for stores x items (the demand forecasting demo data).

One row per (store, item, day) from the item's launch on: static attributes (``store_type``,
``category``), the day's ``price`` and ``promo`` (planned ahead, so known for the day being
forecast), whether the day is a public ``holiday``, and the ``units`` sold.

The expected units of a series on a day are a product of:

* a level: store size (lognormal) x item popularity (lognormal), about 1 to 60 units a day;
* a trend: a per-series slope of -15 % to +25 % a year;
* weekly seasonality: a day-of-week profile per store type (weekend-heavy or weekday-heavy);
* yearly seasonality: one sine per category (amplitude 5 % to 35 %, its own phase);
* price: ``(price / base price) ** -elasticity``, elasticity 1 to 2.5 per item; the base price
  moves in steps of -10 % to +10 % a few times a year;
* promotions: 1 to 2 weeks at 10 % to 35 % off (the price effect), plus a 1.3x display uplift;
* holidays: a 1.4x rush on the two days before one; closed on 25 Dec and 1 Jan (zeros).

On top of that:

* **noise** (documented, fixed): units ~ Poisson(mean x G), G ~ Gamma(shape 8, scale 1/8),
  i.e. negative binomial, a multiplicative day-to-day noise with a coefficient of variation
  of 1/sqrt(8) = 0.35 beside Poisson's own. No model can get below this noise floor;
* **stock-outs**: runs of 1 to 5 days with zero sales (about 1 % of days start one);
* **new items**: 10 % of the items launch during the period, with no rows before launch
  (short history), and sell 1.5x for their first four weeks.

``period="drifted"`` is what a market shows after a while: prices up 20 % across the board,
a competitor opening near a third of the stores (their demand -35 %) and promotions twice
as frequent. ``period="stable"`` is the same process later in time with another seed.
Every series' parameters depend on the seed alone, and time effects on the calendar date,
so a later period continues the same stores and items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STORE_TYPES = ("city", "suburb", "mall")
CATEGORIES = ("grocery", "household", "beverages", "snacks", "personal_care")
# day-of-week multipliers, Monday first
WEEKLY = {
    "city": (1.05, 1.0, 1.0, 1.05, 1.15, 0.95, 0.8),
    "suburb": (0.85, 0.85, 0.9, 0.95, 1.15, 1.35, 0.95),
    "mall": (0.75, 0.75, 0.8, 0.85, 1.1, 1.55, 1.2),
}
CLOSED = ((12, 25), (1, 1))
HOLIDAYS = ((1, 1), (4, 18), (5, 1), (7, 4), (10, 12), (11, 27), (12, 25))
NOISE_SHAPE = 8.0  # Gamma shape of the multiplicative noise: CV = 1/sqrt(8) = 0.35
EPOCH = pd.Timestamp("2020-01-01", tz="UTC")  # time effects count days from here
COLUMNS = [
    "date",
    "store_id",
    "item_id",
    "store_type",
    "category",
    "price",
    "promo",
    "holiday",
    "units",
]


def _population(seed: int, stores: int, items: int, start: pd.Timestamp, days: int) -> dict:
    """Every store's and item's fixed parameters: the seed alone decides them."""
    rng = np.random.default_rng([seed, 0])
    store_size = rng.lognormal(0.0, 0.45, stores)
    store_type = rng.choice(len(STORE_TYPES), stores, p=(0.4, 0.35, 0.25))
    item_pop = rng.lognormal(1.6, 0.8, items)
    category = rng.integers(len(CATEGORIES), size=items)
    base_price = np.round(rng.uniform(1.0, 20.0, items), 2)
    elasticity = rng.uniform(1.0, 2.5, items)
    yearly_amp = rng.uniform(0.05, 0.35, len(CATEGORIES))
    yearly_phase = rng.uniform(0, 365.25, len(CATEGORIES))
    trend = rng.uniform(-0.15, 0.25, (stores, items))
    # launch: a tenth of the items appear during the configured data, at a random day
    launch_offset = np.full(items, -(10**6))
    new = rng.random(items) < 0.10
    launch_offset[new] = rng.integers(days // 3, max(days // 3 + 1, days - 14), new.sum())
    launch_day = int((start - EPOCH).days) + launch_offset
    competitor = rng.random(stores) < 1 / 3
    return {
        "store_size": store_size,
        "store_type": store_type,
        "item_pop": item_pop,
        "category": category,
        "base_price": base_price,
        "elasticity": elasticity,
        "yearly_amp": yearly_amp,
        "yearly_phase": yearly_phase,
        "trend": trend,
        "launch_day": launch_day,
        "competitor": competitor,
    }


def _calendar(dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(holiday flag, closed flag, pre-holiday rush multiplier) per date."""
    md = list(zip(dates.month, dates.day, strict=True))
    holiday = np.array([d in HOLIDAYS for d in md], dtype=np.int8)
    closed = np.array([d in CLOSED for d in md], dtype=bool)
    rush = np.ones(len(dates))
    for ahead in (1, 2):
        later = dates + pd.Timedelta(days=ahead)
        rush[[(m, d) in HOLIDAYS for m, d in zip(later.month, later.day, strict=True)]] = 1.4
    return holiday, closed, rush


def _price_steps(seed: int, base: np.ndarray, day0: int, days: int) -> np.ndarray:
    """Base price per (item, day): steps of -10 %..+10 % about every 100 days.

    The schedule depends on the seed alone and runs on absolute days from ``EPOCH``, so a
    later period continues the prices where an earlier one left them."""
    items, end = len(base), day0 + days
    factor = np.ones((items, end))
    for i in range(items):
        rng = np.random.default_rng([seed, 2, i])  # one stream per item: any end, same steps
        t = int(rng.integers(0, 100))
        level = 1.0
        while t < end:
            level *= rng.uniform(0.9, 1.1)
            factor[i, t:] = level
            t += int(rng.integers(60, 140))
    return np.round(base[:, None] * factor[:, day0:], 2)


def _promotions(rng: np.random.Generator, shape: tuple[int, int], rate: float) -> np.ndarray:
    """Promotion flags per (series, day): blocks of 7 to 14 days, ``rate`` of blocks per day."""
    series, days = shape
    promo = np.zeros(shape, dtype=np.int8)
    starts = rng.random(shape) < rate
    for s, t in zip(*np.nonzero(starts), strict=True):
        promo[s, t : t + int(rng.integers(7, 15))] = 1
    return promo


def _stockouts(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for s, t in zip(*np.nonzero(rng.random(shape) < 0.01), strict=True):
        out[s, t : t + int(rng.integers(1, 6))] = True
    return out


def generate(
    stores: int = 10,
    items: int = 50,
    days: int = 730,
    start: str = "2025-01-01",
    seed: int = 42,
    period: str = "normal",
) -> pd.DataFrame:
    """Daily sales of ``stores`` x ``items`` over ``days`` days, fully determined by ``seed``."""
    if period not in ("normal", "stable", "drifted"):
        raise ValueError(f"period must be normal, stable or drifted, got {period!r}")
    first = pd.Timestamp(start, tz="UTC")
    dates = pd.date_range(first, periods=days, freq="D")
    day0 = int((first - EPOCH).days)
    t = day0 + np.arange(days)  # absolute day numbers: later periods continue the trend
    pop = _population(seed, stores, items, first, days)
    # the day-to-day randomness depends on the seed, the period and its start
    rng = np.random.default_rng([seed, 1, day0, ("normal", "stable", "drifted").index(period)])
    drifted = period == "drifted"

    n = stores * items
    store = np.repeat(np.arange(stores), items)
    item = np.tile(np.arange(items), stores)
    holiday, closed, rush = _calendar(dates)
    weekly = np.array([WEEKLY[STORE_TYPES[k]] for k in pop["store_type"]])[store]
    dow = dates.dayofweek.to_numpy()
    cat = pop["category"][item]
    yearly = 1 + pop["yearly_amp"][cat][:, None] * np.sin(
        2 * np.pi * (t[None, :] - pop["yearly_phase"][cat][:, None]) / 365.25
    )
    trend = 1 + pop["trend"][store, item][:, None] * (t[None, :] - 2000) / 365.25
    level = (pop["store_size"][store] * pop["item_pop"][item])[:, None]
    base_price = _price_steps(seed, pop["base_price"], day0, days)[item]
    promo = _promotions(rng, (n, days), rate=(0.016 if drifted else 0.008))
    discount = rng.uniform(0.10, 0.35, (n, 1))
    price = np.round(base_price * np.where(promo == 1, 1 - discount, 1.0), 2)
    if drifted:
        price = np.round(price * 1.2, 2)
    price_effect = (price / base_price) ** -pop["elasticity"][item][:, None]
    mean = (
        level
        * np.clip(trend, 0.2, None)
        * weekly[:, dow]
        * yearly
        * price_effect
        * np.where(promo == 1, 1.3, 1.0)
        * rush[None, :]
    )
    age = t[None, :] - pop["launch_day"][item][:, None]
    mean = mean * np.where((age >= 0) & (age < 28), 1.5, 1.0)
    if drifted:
        mean = mean * np.where(pop["competitor"][store], 0.65, 1.0)[:, None]
    noise = rng.gamma(NOISE_SHAPE, 1 / NOISE_SHAPE, mean.shape)
    units = rng.poisson(mean * noise)
    units[:, closed] = 0
    units[_stockouts(rng, units.shape)] = 0

    alive = age >= 0  # no rows before an item's launch
    rows = np.nonzero(alive)
    frame = pd.DataFrame(
        {
            "date": dates[rows[1]],
            "store_id": store[rows[0]].astype(np.int64) + 1,
            "item_id": item[rows[0]].astype(np.int64) + 1,
            "store_type": np.array(STORE_TYPES, dtype=object)[pop["store_type"][store[rows[0]]]],
            "category": np.array(CATEGORIES, dtype=object)[cat[rows[0]]],
            "price": price[rows],
            "promo": promo[rows].astype(np.int64),
            "holiday": holiday[rows[1]].astype(np.int64),
            "units": units[rows].astype(np.int64),
        }
    )
    frame["store_type"] = frame["store_type"].astype("string")
    frame["category"] = frame["category"].astype("string")
    return frame.sort_values(["date", "store_id", "item_id"], kind="stable").reset_index(drop=True)[
        COLUMNS
    ]
