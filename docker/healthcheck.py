#!/usr/bin/env python3
"""Container health check: exit 0 when the service answers 200 on its readiness endpoint.

Used by the serving image's HEALTHCHECK (the slim image has no curl). Reads AWNET_PORT
(default 8000) and AWNET_HEALTHCHECK_URL (overrides the whole URL); standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def readiness_url() -> str:
    url = os.environ.get("AWNET_HEALTHCHECK_URL")
    if url:
        return url
    port = os.environ.get("AWNET_PORT", "8000")
    return f"http://127.0.0.1:{port}/v2/health/ready"


def main() -> int:
    url = readiness_url()
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 (fixed local URL)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
