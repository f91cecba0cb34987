"""``python -m ember <command>``: the same as the ``ember`` command (``python -m ember run train.py``)."""
import sys

from ember.cli import main

if __name__ == "__main__":
    sys.exit(main())
