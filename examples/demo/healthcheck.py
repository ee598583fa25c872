"""Docker HEALTHCHECK for the app: exit 0 when GET <path> answers 200 on the local port."""

import os
import sys
import urllib.request

path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
url = f"http://127.0.0.1:{os.environ.get('APP_PORT', '8000')}{path}"
try:
    with urllib.request.urlopen(url, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure means unhealthy; say why in `docker inspect`
    print(f"unhealthy: {url}: {exc}")
    sys.exit(1)
