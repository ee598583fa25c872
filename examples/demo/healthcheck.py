"""Docker HEALTHCHECK for the app: exit 0 when GET <path> answers 200 on the local port."""

from __future__ import annotations

import os
import sys
import urllib.request


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "/healthz"
    url = f"http://127.0.0.1:{os.environ.get('APP_PORT', '8000')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # any failure means unhealthy; say why in `docker inspect`
        print(f"unhealthy: {url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
