"""``python -m helpers.shipped_data write [folder]`` / ``check [folder]``."""

import sys

from . import main

sys.exit(main())
