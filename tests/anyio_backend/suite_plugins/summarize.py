"""Per-file pass/fail/skip counts from a pytest JUnit XML file (run_anyio_suite.sh)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict


def main(path: str) -> None:
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        # classname is "tests.test_x.TestClass" or "tests.streams.test_y": keep the module.
        while module and not module[-1].startswith("test_"):
            module.pop()
        name = "/".join(module) + ".py" if module else "?"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        counts[name][outcome] += 1
    total: Counter[str] = Counter()
    print(f"{'file':45} {'passed':>7} {'failed':>7} {'skipped':>8} {'xfailed':>8}")
    for name in sorted(counts):
        c = counts[name]
        total.update(c)
        print(f"{name:45} {c['passed']:7} {c['failed']:7} {c['skipped']:8} {c['xfailed']:8}")
    print(
        f"{'TOTAL':45} {total['passed']:7} {total['failed']:7} "
        f"{total['skipped']:8} {total['xfailed']:8}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
