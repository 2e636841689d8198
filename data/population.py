"""What the synthetic generator (``data.generate``) keeps across days, and the columns of one day.

``Population``: the users, their devices and the merchants, drawn once from the seed; ``Labels``: outcomes
decided but not yet reported; ``DayColumns``: one day's transactions, logins and new devices as each pattern
adds them; and the Arrow helpers the day's tables are written with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from data import schemas

if TYPE_CHECKING:
    from data.generate import GeneratorConfig

US_PER_DAY = 86_400_000_000
US_PER_MIN = 60_000_000
FAVOURITES = 4  # merchants each customer mostly buys from
_COUNTRY_WEIGHTS = np.array([35, 12, 10, 8, 5, 5, 4, 4, 3, 5, 3, 2, 2, 1, 0.5, 0.5])
_SIGNUP_HORIZON_DAYS = 90  # accounts that join after the first day sign up within this many days
_COMPROMISES_PER_MERCHANT_DAY = 0.0015


class Population:
    """Users, their devices and the merchants: everything that lives across days."""

    def __init__(self, config: GeneratorConfig) -> None:
        rng = np.random.default_rng([config.seed, 0])
        n = config.users
        self.n = n
        self.start_us = day_start_us(config.start)
        self.user_id = np.arange(1, n + 1, dtype=np.int64)
        joins_during = rng.random(n) < 0.05
        signup_offset = np.where(
            joins_during, rng.integers(0, _SIGNUP_HORIZON_DAYS, n), -rng.integers(1, 1500, n)
        ).astype(np.int64)
        self.signup_day = signup_offset  # relative to start; negative = before the first raw day
        self.registered_day = np.maximum(signup_offset, 0)
        age = np.clip(rng.normal(38, 13, n), 18, 85).astype(np.int32)
        self.birth_year = (config.start.year - age).astype(np.int32)
        self.home = rng.choice(len(schemas.COUNTRIES), n, p=_COUNTRY_WEIGHTS / _COUNTRY_WEIGHTS.sum())
        self.kyc = rng.choice(4, n, p=[0.05, 0.25, 0.4, 0.3]).astype(np.int32)
        self.mu = rng.normal(3.3, 0.7, n)
        self.rate = config.txns_per_user_day * rng.gamma(2.0, 0.5, n)
        tenure = np.maximum(-signup_offset, 0)
        self.orders_before = rng.poisson(self.rate * tenure * 0.8).astype(np.int64)
        self.spend_before = np.round(self.orders_before * np.exp(self.mu + 0.18), 2)
        self.channel_cdf = np.cumsum(rng.dirichlet([2.0, 3.0, 2.0], n), axis=1)

        self.n_dev = 1 + rng.binomial(2, 0.3, n)
        self.first_dev = np.concatenate([[0], np.cumsum(self.n_dev)[:-1]]).astype(np.int64)
        n_devices = int(self.n_dev.sum())
        self.dev_user = np.repeat(np.arange(n), self.n_dev)
        self.dev_type = rng.choice(3, n_devices, p=[0.6, 0.3, 0.1])
        self.dev_os = os_for(self.dev_type, rng)
        self.dev_emulator = rng.random(n_devices) < 0.005
        self.dev_first_seen_us = (
            self.start_us + signup_offset[self.dev_user] * US_PER_DAY + rng.integers(0, US_PER_DAY, n_devices)
        )
        self.next_device_id = n_devices + 1  # ids 1..n_devices are the population's devices

        m = max(50, n // 40)
        self.n_merchants = m
        weights = 1.0 / np.arange(1, m + 1) ** 1.1
        self.merchant_p = weights / weights.sum()
        self.favourites = rng.choice(m, (n, FAVOURITES), p=self.merchant_p)
        self.compromised_until: dict[int, int] = {}  # merchant index -> last day it is compromised

    def compromise_merchants(self, d: int, rng: np.random.Generator) -> np.ndarray:
        """Popular-enough merchants that start leaking cards today stay compromised 3-10 days."""
        fresh = rng.choice(
            max(1, int(self.n_merchants * 0.3)), rng.poisson(self.n_merchants * _COMPROMISES_PER_MERCHANT_DAY)
        )
        for merchant in fresh:
            self.compromised_until[int(merchant)] = d + int(rng.integers(2, 10))
        self.compromised_until = {m: last for m, last in self.compromised_until.items() if last >= d}
        return np.array(sorted(self.compromised_until), dtype=np.int64)


def os_for(dev_type: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mobile_os = rng.choice([0, 1], len(dev_type), p=[0.6, 0.4])  # android, ios
    desktop_os = rng.choice([2, 3, 4], len(dev_type), p=[0.7, 0.25, 0.05])  # windows, macos, linux
    return np.where(dev_type == 1, desktop_os, mobile_os)


def day_start_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def strings(codes: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values)).cast(pa.string())


def timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), schemas.TS)


@dataclass
class Labels:
    """Labels decided but not yet reported, kept until the day they arrive."""

    txn_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    is_fraud: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    txn_us: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    reported_us: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def add(self, txn_id: np.ndarray, is_fraud: np.ndarray, txn_us: np.ndarray, rng: np.random.Generator) -> None:
        n = len(txn_id)
        delay = np.where(
            is_fraud == 1,
            rng.integers(1 * US_PER_DAY, 21 * US_PER_DAY, n),  # chargebacks: 1-21 days later
            3 * US_PER_DAY + rng.integers(0, US_PER_DAY, n),  # cleared after the 3-day review
        )
        self.txn_id = np.concatenate([self.txn_id, txn_id])
        self.is_fraud = np.concatenate([self.is_fraud, is_fraud.astype(np.int8)])
        self.txn_us = np.concatenate([self.txn_us, txn_us])
        self.reported_us = np.concatenate([self.reported_us, txn_us + delay])

    def pop_until(self, end_us: int) -> pa.Table:
        due = self.reported_us < end_us
        order = np.argsort(self.reported_us[due], kind="stable")
        fraud = self.is_fraud[due][order]
        table = pa.table(
            {
                "txn_id": self.txn_id[due][order],
                "is_fraud": pa.array(fraud, pa.int8()),
                "label_source": strings(fraud.astype(np.int32), ("cleared", "chargeback")),
                "txn_timestamp": timestamps(self.txn_us[due][order]),
                "reported_at": timestamps(self.reported_us[due][order]),
            },
            schema=schemas.LABELS,
        )
        keep = ~due
        self.txn_id, self.is_fraud = self.txn_id[keep], self.is_fraud[keep]
        self.txn_us, self.reported_us = self.txn_us[keep], self.reported_us[keep]
        return table


@dataclass
class DayColumns:
    """Columns of one day's transactions and logins, grown by each pattern."""

    txn: dict[str, list[np.ndarray]] = field(default_factory=dict)
    login: dict[str, list[np.ndarray]] = field(default_factory=dict)
    new_devices: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @staticmethod
    def _add(target: dict[str, list[np.ndarray]], **columns: np.ndarray) -> None:
        for name, values in columns.items():
            target.setdefault(name, []).append(np.asarray(values))

    def add_txns(self, **columns: np.ndarray) -> None:
        self._add(self.txn, **columns)

    def add_logins(self, **columns: np.ndarray) -> None:
        self._add(self.login, **columns)

    def add_devices(self, **columns: np.ndarray) -> None:
        self._add(self.new_devices, **columns)

    @staticmethod
    def joined(target: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in target.items()}
