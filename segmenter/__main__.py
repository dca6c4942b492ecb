"""``python -m segmenter``: see ``segmenter.cli``."""

import sys

from segmenter.cli import main

sys.exit(main())
