"""Generate a realistic 30-day tutoring trace (CSV: start,end in ISO-8601 UTC), seeded.

    python bench/make_trace.py --out trace.csv [--days 30] [--seed 7] [--start 2026-03-02]

Students of a small tutoring company, in one time zone (times are written as UTC):
school days have a small morning trickle (home-schoolers), the after-school peak 15-18 h and the
evening peak 19-21 h; Saturdays a late-morning and an evening bump, Sundays only a light evening.
Lessons last 20-60 minutes, most around half an hour. Several students may overlap.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

# (first hour, last hour, mean lessons starting in that window), by weekday (0 = Monday)
SCHOOL_DAY = [(9.0, 14.0, 1.0), (15.0, 18.0, 7.0), (19.0, 21.0, 4.0)]
SATURDAY = [(10.0, 13.0, 2.0), (19.0, 21.0, 1.5)]
SUNDAY = [(18.0, 21.0, 2.0)]
WINDOWS = {0: SCHOOL_DAY, 1: SCHOOL_DAY, 2: SCHOOL_DAY, 3: SCHOOL_DAY, 4: SCHOOL_DAY}
WINDOWS |= {5: SATURDAY, 6: SUNDAY}


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means here."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def lesson_minutes(rng: random.Random) -> float:
    return rng.triangular(20.0, 60.0, 30.0)


def make_trace(days: int, seed: int, start: date) -> list[tuple[datetime, datetime]]:
    rng = random.Random(seed)
    sessions = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for first, last, mean in WINDOWS[day.weekday()]:
            for _ in range(poisson(rng, mean)):
                begin = midnight + timedelta(hours=rng.uniform(first, last))
                end = begin + timedelta(minutes=lesson_minutes(rng))
                sessions.append((begin.replace(microsecond=0), end.replace(microsecond=0)))
    return sorted(sessions)


def write_csv(path: Path, sessions: list[tuple[datetime, datetime]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start", "end"])
        for begin, end in sessions:
            writer.writerow([begin.isoformat(), end.isoformat()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 2))
    args = parser.parse_args(argv)
    sessions = make_trace(args.days, args.seed, args.start)
    write_csv(args.out, sessions)
    print(f"{len(sessions)} sessions over {args.days} days -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
