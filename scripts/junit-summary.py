"""Summarise the JUnit files of one `make test` run.

Each MPI suite writes one file per rank; a test counts as failed there if it failed
on any rank. Prints one line per suite and a closing 'N passed, N failed, N skipped'.
"""

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def outcomes(path: Path) -> dict[str, str]:
    result = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            result[name] = "failed"
        elif case.find("skipped") is not None:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


def main(folder: str) -> int:
    suites: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(Path(folder).glob("*.xml")):
        suites[path.stem.split("-rank")[0]].append(path)
    if not suites:
        print("no test results found")
        return 1
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for suite, paths in suites.items():
        merged: dict[str, str] = {}
        for path in paths:
            for name, outcome in outcomes(path).items():
                prev = merged.get(name)
                if prev == "failed" or outcome == "failed":
                    merged[name] = "failed"
                elif prev is None or prev == "skipped":
                    merged[name] = outcome
        counts = {k: sum(1 for v in merged.values() if v == k) for k in total}
        for k in total:
            total[k] += counts[k]
        print(f"  {suite:<10} ({len(paths)} rank file(s)): {counts['passed']} passed, "
              f"{counts['failed']} failed, {counts['skipped']} skipped")
    print(f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return 1 if total["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
