"""Synthetic raw sources with realistic fraud, deterministic for a seed, generated one day at a time.

Normal customers buy from a handful of favourite merchants at amounts around their own typical amount, mostly
in their home country and in daytime. Three fraud patterns sit on top, each visible in the data a model and a
monitor can see:

- **card testing**: a burst of 5-20 tiny payments within minutes at a merchant the customer never used;
- **account takeover**: failed logins from a foreign IP, then a login from a brand-new (often emulated) device,
  then a few large payments abroad;
- **compromised merchants**: for a few days, a share of payments at a handful of merchants turn out fraudulent.

Memory is bounded by one day of events plus the labels still in flight (a few days), so 10M transactions are
generated without holding them all. Each day draws from its own random stream seeded by (seed, day), so a run
with more days reproduces the earlier days byte for byte.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from data import schemas
from data.files import day_file, write_parquet_atomic
from data.population import (
    FAVOURITES,
    US_PER_DAY,
    US_PER_MIN,
    DayColumns,
    Labels,
    Population,
    os_for,
    strings,
    timestamps,
)
from skewless.errors import BadInputError

_CARD_TEST_RATE = 0.0006  # bursts per ordinary transaction
_ATO_RATE = 0.0003  # takeovers per ordinary transaction
_BACKGROUND_FRAUD = 0.0005
_COMPROMISED_FRAUD = 0.12


@dataclass(frozen=True)
class GeneratorConfig:
    users: int
    days: int
    seed: int = 7
    start: date = field(default_factory=lambda: datetime.now(UTC).date() - timedelta(days=14))
    txns_per_user_day: float = 1.0

    def validate(self) -> None:
        if not 10 <= self.users <= 50_000_000:
            raise BadInputError(f"--users must be between 10 and 50,000,000, got {self.users}")
        if not 1 <= self.days <= 3_660:
            raise BadInputError(f"--days must be between 1 and 3,660, got {self.days}")
        if self.seed < 0:
            raise BadInputError(f"--seed must be >= 0, got {self.seed}")
        if not 0 < self.txns_per_user_day <= 100:
            raise BadInputError(f"--txns-per-user-day must be in (0, 100], got {self.txns_per_user_day}")
        if not date(2000, 1, 1) <= self.start <= date(2100, 1, 1):
            raise BadInputError(f"--start must be between 2000-01-01 and 2100-01-01, got {self.start}")


@dataclass(frozen=True)
class GenerationSummary:
    days: int
    transactions: int
    fraud: int
    labels: int
    behaviour_events: int
    devices: int
    users: int

    @property
    def fraud_rate(self) -> float:
        return self.fraud / self.transactions if self.transactions else 0.0


class Generator:
    """Writes raw sources day by day into ``raw_dir``; see the module docstring for what they contain."""

    def __init__(self, config: GeneratorConfig, raw_dir: Path) -> None:
        config.validate()
        self.config = config
        self.raw_dir = raw_dir
        self.pop = Population(config)
        self.labels = Labels()
        self.next_txn_id = 1
        self.next_event_id = 1

    def run(self, progress: Callable[[str], None] | None = None) -> GenerationSummary:
        staging = self.raw_dir / f".staging-{uuid.uuid4().hex}"
        totals = dict(transactions=0, fraud=0, labels=0, behaviour_events=0, devices=0, users=0)
        try:
            for d in range(self.config.days):
                counts = self._write_day(d, staging)
                for key, value in counts.items():
                    totals[key] += value
                if progress:
                    day = self.config.start + timedelta(days=d)
                    progress(f"{day}: {counts['transactions']:,} transactions, {counts['fraud']:,} fraud")
            self._publish(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return GenerationSummary(days=self.config.days, **totals)

    def _publish(self, staging: Path) -> None:
        """Move every staged file into place; a failed run leaves the previous files untouched."""
        for source in schemas.SOURCES:
            for staged in sorted((staging / source).glob("*.parquet")):
                target = self.raw_dir / source / staged.name
                target.parent.mkdir(parents=True, exist_ok=True)
                staged.replace(target)

    def _write_day(self, d: int, out: Path) -> dict[str, int]:
        pop, cfg = self.pop, self.config
        rng = np.random.default_rng([cfg.seed, 1, d])
        day = cfg.start + timedelta(days=d)
        day_us = pop.start_us + d * US_PER_DAY
        today = DayColumns()

        n_ordinary = self._ordinary(d, day_us, rng, today)
        self._card_testing(d, day_us, rng, today, rng.poisson(n_ordinary * _CARD_TEST_RATE))
        self._account_takeover(d, day_us, rng, today, rng.poisson(n_ordinary * _ATO_RATE))
        self._ordinary_logins(d, day_us, rng, today)

        txn = DayColumns.joined(today.txn)
        order = np.argsort(txn["ts"], kind="stable")
        txn = {k: v[order] for k, v in txn.items()}
        n = len(order)
        txn_id = np.arange(self.next_txn_id, self.next_txn_id + n, dtype=np.int64)
        self.next_txn_id += n
        country = txn["country"]
        currency_code = np.array([schemas.CURRENCIES.index(schemas.COUNTRY_CURRENCY[c]) for c in schemas.COUNTRIES])
        currency = currency_code[country]
        foreign_currency = rng.random(n) < 0.03
        currency = np.where(foreign_currency, schemas.CURRENCIES.index("USD"), currency)
        transactions = pa.table(
            {
                "txn_id": txn_id,
                "user_id": pop.user_id[txn["user"]],
                "device_id": txn["device"].astype(np.int64),
                "merchant_id": (txn["merchant"] + 1).astype(np.int64),
                "amount": np.round(txn["amount"], 2),
                "currency": strings(currency, schemas.CURRENCIES),
                "country": strings(country, schemas.COUNTRIES),
                "channel": strings(txn["channel"], schemas.CHANNELS),
                "event_timestamp": timestamps(txn["ts"]),
            },
            schema=schemas.TRANSACTIONS,
        )
        self.labels.add(txn_id, txn["fraud"], txn["ts"], rng)

        logins = DayColumns.joined(today.login)
        lorder = np.argsort(logins["ts"], kind="stable")
        logins = {k: v[lorder] for k, v in logins.items()}
        m = len(lorder)
        behaviour = pa.table(
            {
                "event_id": np.arange(self.next_event_id, self.next_event_id + m, dtype=np.int64),
                "user_id": pop.user_id[logins["user"]],
                "device_id": logins["device"].astype(np.int64),
                "event_type": strings(logins["failed"].astype(np.int32), schemas.BEHAVIOUR_EVENTS),
                "ip_country": strings(logins["ip"], schemas.COUNTRIES),
                "session_seconds": pa.array(
                    np.where(logins["failed"], np.nan, np.round(logins["session"], 1)), from_pandas=True
                ),
                "event_timestamp": timestamps(logins["ts"]),
            },
            schema=schemas.BEHAVIOUR,
        )
        self.next_event_id += m

        devices = self._devices_for_day(d, today)
        users = self._users_for_day(d)
        labels = self.labels.pop_until(day_us + US_PER_DAY)

        for source, table in (
            ("transactions", transactions),
            ("behaviour", behaviour),
            ("devices", devices),
            ("users", users),
            ("labels", labels),
        ):
            write_parquet_atomic(table, day_file(out / source, day))
        return {
            "transactions": n,
            "fraud": int(txn["fraud"].sum()),
            "labels": labels.num_rows,
            "behaviour_events": m,
            "devices": devices.num_rows,
            "users": users.num_rows,
        }

    def _ordinary(self, d: int, day_us: int, rng: np.random.Generator, today: DayColumns) -> int:
        pop = self.pop
        active = pop.registered_day <= d
        counts = rng.poisson(pop.rate * active)
        user = np.repeat(np.arange(pop.n), counts)
        n = len(user)
        device = 1 + pop.first_dev[user] + (rng.random(n) * pop.n_dev[user]).astype(np.int64)
        favourite = pop.favourites[user, rng.integers(0, FAVOURITES, n)]
        anywhere = rng.choice(pop.n_merchants, n, p=pop.merchant_p)
        merchant = np.where(rng.random(n) < 0.75, favourite, anywhere)
        amount = np.maximum(rng.lognormal(pop.mu[user], 0.6), 0.5)
        abroad = rng.random(n) < 0.03
        country = np.where(abroad, rng.integers(0, len(schemas.COUNTRIES), n), pop.home[user])
        channel = (rng.random(n)[:, None] > pop.channel_cdf[user]).sum(axis=1).clip(0, 2)
        ts = day_us + _daytime_us(rng, n)
        fraud = rng.random(n) < _BACKGROUND_FRAUD
        amount = np.where(fraud, amount * 3, amount)
        bad = np.isin(merchant, pop.compromise_merchants(d, rng))
        fraud |= bad & (rng.random(n) < _COMPROMISED_FRAUD)
        today.add_txns(
            user=user, device=device, merchant=merchant, amount=amount, country=country,
            channel=channel, ts=ts, fraud=fraud.astype(np.int8),
        )  # fmt: skip
        return n

    def _new_devices(
        self, user: np.ndarray, ts: np.ndarray, rng: np.random.Generator, today: DayColumns, emulator_p: float
    ) -> np.ndarray:
        k = len(user)
        ids = np.arange(self.pop.next_device_id, self.pop.next_device_id + k, dtype=np.int64)
        self.pop.next_device_id += k
        dev_type = rng.choice(2, k)  # mobile or desktop
        today.add_devices(
            device_id=ids, user=user, type=dev_type, os=os_for(dev_type, rng),
            emulator=rng.random(k) < emulator_p, first_seen=ts,
        )  # fmt: skip
        return ids

    def _victims(self, d: int, k: int, rng: np.random.Generator) -> np.ndarray:
        candidates = np.flatnonzero(self.pop.registered_day <= d)
        return rng.choice(candidates, k) if len(candidates) and k else np.empty(0, np.int64)

    def _card_testing(self, d: int, day_us: int, rng: np.random.Generator, today: DayColumns, k: int) -> None:
        pop = self.pop
        victims = self._victims(d, k, rng)
        if not len(victims):
            return
        lengths = rng.integers(5, 21, len(victims))
        user = np.repeat(victims, lengths)
        n = len(user)
        tail_start = pop.n_merchants // 2
        merchant = np.repeat(rng.integers(tail_start, pop.n_merchants, len(victims)), lengths)
        burst_start = np.repeat(day_us + rng.integers(0, US_PER_DAY - 30 * US_PER_MIN, len(victims)), lengths)
        within = np.concatenate([np.cumsum(rng.exponential(40e6, size)) for size in lengths]).astype(np.int64)
        ts = burst_start + within
        fresh = rng.random(len(victims)) < 0.5
        dev_ids = self._new_devices(
            victims[fresh], burst_start[np.cumsum(lengths)[fresh] - lengths[fresh]], rng, today, 0.3
        )
        device_per_burst = 1 + pop.first_dev[victims]
        device_per_burst[fresh] = dev_ids
        foreign = rng.random(len(victims)) < 0.5
        country = np.where(foreign, rng.integers(0, len(schemas.COUNTRIES), len(victims)), pop.home[victims])
        today.add_txns(
            user=user, device=np.repeat(device_per_burst, lengths), merchant=merchant,
            amount=np.round(rng.uniform(0.5, 4.99, n), 2), country=np.repeat(country, lengths),
            channel=np.zeros(n, np.int64), ts=ts, fraud=np.ones(n, np.int8),
        )  # fmt: skip

    def _account_takeover(self, d: int, day_us: int, rng: np.random.Generator, today: DayColumns, k: int) -> None:
        pop = self.pop
        victims = self._victims(d, k, rng)
        if not len(victims):
            return
        n_countries = len(schemas.COUNTRIES)
        foreign = (pop.home[victims] + rng.integers(1, n_countries, len(victims))) % n_countries
        t0 = day_us + rng.integers(45 * US_PER_MIN, US_PER_DAY - 45 * US_PER_MIN, len(victims))
        device = self._new_devices(victims, t0 - 30 * US_PER_MIN, rng, today, 0.4)
        failures = rng.integers(2, 9, len(victims))
        fail_user = np.repeat(victims, failures)
        today.add_logins(
            user=fail_user, device=np.repeat(device, failures), failed=np.ones(len(fail_user), bool),
            ip=np.repeat(foreign, failures), session=np.zeros(len(fail_user)),
            ts=np.repeat(t0, failures) - rng.integers(1, 30 * US_PER_MIN, len(fail_user)),
        )  # fmt: skip
        today.add_logins(
            user=victims, device=device, failed=np.zeros(len(victims), bool), ip=foreign,
            session=rng.lognormal(5.5, 0.5, len(victims)), ts=t0,
        )  # fmt: skip
        spends = rng.integers(1, 4, len(victims))
        user = np.repeat(victims, spends)
        n = len(user)
        stays_home = rng.random(n) < 0.3
        today.add_txns(
            user=user, device=np.repeat(device, spends),
            merchant=rng.choice(pop.n_merchants, n, p=pop.merchant_p),
            amount=np.exp(pop.mu[user]) * rng.uniform(5, 20, n),
            country=np.where(stays_home, pop.home[user], np.repeat(foreign, spends)),
            channel=rng.choice(2, n), ts=np.repeat(t0, spends) + rng.integers(US_PER_MIN, 20 * US_PER_MIN, n),
            fraud=np.ones(n, np.int8),
        )  # fmt: skip

    def _ordinary_logins(self, d: int, day_us: int, rng: np.random.Generator, today: DayColumns) -> None:
        pop = self.pop
        shoppers = np.unique(today.txn["user"][0])  # the first batch is the ordinary shoppers; they log in
        per_user = 1 + rng.poisson(0.3, len(shoppers))
        user = np.repeat(shoppers, per_user)
        n = len(user)
        failed = rng.random(n) < 0.04
        device = 1 + pop.first_dev[user] + (rng.random(n) * pop.n_dev[user]).astype(np.int64)
        ip = np.where(rng.random(n) < 0.02, rng.integers(0, len(schemas.COUNTRIES), n), pop.home[user])
        today.add_logins(
            user=user, device=device, failed=failed, ip=ip, session=rng.lognormal(5.0, 0.8, n),
            ts=day_us + _daytime_us(rng, n),
        )  # fmt: skip

    def _devices_for_day(self, d: int, today: DayColumns) -> pa.Table:
        pop = self.pop
        dev_registered = pop.registered_day[pop.dev_user]
        mine = np.flatnonzero(dev_registered == d)
        first_seen = np.maximum(pop.dev_first_seen_us[mine], pop.start_us - 1500 * US_PER_DAY)
        columns = {
            "device_id": mine.astype(np.int64) + 1,
            "user": pop.dev_user[mine],
            "type": pop.dev_type[mine],
            "os": pop.dev_os[mine],
            "emulator": pop.dev_emulator[mine],
            "first_seen": first_seen,
        }
        if today.new_devices:
            extra = DayColumns.joined(today.new_devices)
            columns = {k: np.concatenate([v, extra[k]]) for k, v in columns.items()}
        return pa.table(
            {
                "device_id": columns["device_id"],
                "user_id": pop.user_id[columns["user"]],
                "device_type": strings(columns["type"], schemas.DEVICE_TYPES),
                "os": strings(columns["os"], schemas.OPERATING_SYSTEMS),
                "is_emulator": columns["emulator"].astype(bool),
                "first_seen": timestamps(columns["first_seen"]),
            },
            schema=schemas.DEVICES,
        )

    def _users_for_day(self, d: int) -> pa.Table:
        pop = self.pop
        mine = np.flatnonzero(pop.registered_day == d)
        signup = pop.signup_day[mine]
        start = self.config.start
        signup_dates = np.array([start + timedelta(days=int(s)) for s in signup], dtype="datetime64[D]")
        registered_us = pop.start_us + d * US_PER_DAY + np.where(signup < 0, 0, 8 * 3600 * 1_000_000)
        return pa.table(
            {
                "user_id": pop.user_id[mine],
                "signup_date": pa.array(signup_dates, pa.date32()),
                "birth_year": pop.birth_year[mine],
                "home_country": strings(pop.home[mine], schemas.COUNTRIES),
                "kyc_level": pop.kyc[mine],
                "total_spend_before": np.where(signup < 0, pop.spend_before[mine], 0.0),
                "orders_before": np.where(signup < 0, pop.orders_before[mine], 0),
                "registered_at": timestamps(registered_us),
            },
            schema=schemas.USERS,
        )


def _daytime_us(rng: np.random.Generator, n: int) -> np.ndarray:
    """Time of day in microseconds: mostly around mid-afternoon, some at any hour."""
    daytime = rng.normal(14 * 3600, 4 * 3600, n)
    anytime = rng.uniform(0, 86_400, n)
    seconds = np.where(rng.random(n) < 0.8, daytime, anytime) % 86_400
    return (seconds * 1e6).astype(np.int64)


def generate(
    config: GeneratorConfig, raw_dir: Path, progress: Callable[[str], None] | None = None
) -> GenerationSummary:
    """Generate ``config.days`` days of raw sources into ``raw_dir``."""
    return Generator(config, raw_dir).run(progress)
