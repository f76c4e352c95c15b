"""The Hugging Face hub: one quick look at whether it answers, so that an offline run fails at once.

Without it, `datasets` and `huggingface_hub` retry each request five times with growing pauses
(half a minute, with a warning per try) before they give up.
"""
from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request

PROBE_SECONDS = 3.0
OFFLINE_HINT = "with HF_HUB_OFFLINE=1, what was downloaded before is read from the local cache"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_mode() -> bool:
    """HF_HUB_OFFLINE (or the older names) is set: the libraries read their local cache and never ask the hub."""
    return any(os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def unreachable() -> str | None:
    """Why the hub cannot be reached (the endpoint and the reason), or None when it answers or offline mode is on.

    One request per endpoint and process: every later download asks the answer of the first.
    """
    return None if offline_mode() else _probe(endpoint())


@functools.lru_cache(maxsize=None)
def _probe(url: str) -> str | None:
    try:
        # any HTTP answer at all, an error status too, means the hub is there
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_SECONDS).close()
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        return f"{url}: {getattr(exc.reason, 'strerror', None) or exc.reason}"
    except (OSError, ValueError) as exc:  # a dropped connection, a timeout, a malformed HF_ENDPOINT
        return f"{url}: {exc or type(exc).__name__}"
    return None

