# Gunicorn settings for the demo app, a module inside its artefact (`--config python:gunicorn_conf`).
# TERM is a graceful stop: the listener closes, in-flight requests finish (up to graceful_timeout),
# then the workers exit.
import os

bind = f"0.0.0.0:{os.environ.get('APP_PORT', '8000')}"
worker_class = "gthread"
workers = 2
threads = 32
# Longer than HAProxy's pool-purge-delay (5 s): the proxy, not the app, closes idle connections.
keepalive = 75
graceful_timeout = 30
timeout = 60
accesslog = None
errorlog = "-"
loglevel = "warning"


def post_worker_init(worker):
    # After gunicorn installed the worker's signal handlers: a SIGTERM also ends the open /events
    # streams at their next event, so a graceful stop finishes them instead of waiting them out.
    import streams

    streams.end_streams_on_sigterm()
