"""Helpers for the notebook reproduction of arXiv 2506.09428: one module per notebook stage (see README.md)."""

import logging

# bitsandbytes (CPU backend, on processors with AVX512-bf16) tries to fetch an optional faster 4-bit kernel from a
# model hub when it is imported, and logs a warning ("pip install kernels") when it cannot; it then uses its own
# kernel, which is what every number in this repository was measured with. Offline that warning is noise on every
# 4-bit load, so it is hidden; errors still show.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# transformers 5 renamed gradient checkpointing to activation checkpointing; peft and TRL (pinned) still call the
# old property while training, which warns once per arm about code that is not ours to change.
import warnings

warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
