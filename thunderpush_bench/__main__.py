"""``python -m thunderpush_bench``: the ``thunderpush-bench`` command without its script.

Useful where the package is importable but not installed (a checkout), and
for running it with a chosen interpreter, as bench/compare.py does.
"""

import sys

from thunderpush_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
