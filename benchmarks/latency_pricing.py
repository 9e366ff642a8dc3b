"""How long pricing a whole space on every known target takes (loading the tables included).

The search prices every candidate before it trains any; this must stay far below a second.
"""

from __future__ import annotations

import argparse
import statistics
import time

from prunesearch.latency import known_targets, load_table

from latency_report import markdown_table, write_result


def price_everything(targets: list[str], max_depth: int) -> int:
    """Load every table and price every candidate, the teacher and an amortised variant; returns the count."""
    count = 0
    for target in targets:
        table = load_table(target)
        table.estimate_teacher()
        for n in range(1, max_depth + 1):
            for m in range(1, n + 1):
                table.estimate(n, m)
                table.estimate(n, m, template_update=10)
                count += 2
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    targets = known_targets()
    price_everything(targets, 12)
    times, count = [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        count = price_everything(targets, 12)
        times.append(time.perf_counter() - start)
    body = [
        f"Targets: {', '.join(targets)} ({len(targets)}). Space: depth 1..12, interaction layers 1..depth "
        f"(78 students), each priced per frame and with the template re-encoded every 10 frames, plus the teacher.",
        "",
        *markdown_table(["estimates per pass", "passes", "median s per pass", "max s per pass", "µs per estimate"],
                        [[count, args.repeats, f"{statistics.median(times):.4f}", f"{max(times):.4f}",
                          f"{1e6 * statistics.median(times) / count:.1f}"]]),
    ]
    print(write_result("latency_pricing", "Pricing the whole space on every target", body))


if __name__ == "__main__":
    main()
