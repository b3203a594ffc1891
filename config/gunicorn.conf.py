"""gunicorn settings for the web process (gevent workers; WebSockets need many connections)."""

import os
import shutil
import tempfile

from app.web_server import install_json_errors

# gunicorn answers over-long request lines (414) and headers (431) itself, before Flask:
# in JSON too.
install_json_errors()

_host = os.environ.get("API_HOST", "127.0.0.1")
_port = os.environ.get("API_PORT") or os.environ.get("PORT") or "8080"

bind = os.environ.get("GUNICORN_BIND", f"{_host}:{_port}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
# Must exceed the WebSocket clients one worker holds.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "2000"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG")  # unset → no access log (it costs throughput)
# Redacts ?token= (WebSocket tokens) and credential headers from every log line.
logger_class = "app.web_server.RedactingLogger"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    # Request metrics are summed over all workers through files in a per-master directory.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        path = tempfile.mkdtemp(prefix="cryptofunk-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        server._cryptofunk_metrics_dir = path


def post_worker_init(worker):
    # SIGTERM only flips worker.alive; WebSocket requests would then hold the worker for the
    # whole graceful timeout. Watch for it and close every socket with 1001 (going away).
    import gevent

    def close_websockets_on_shutdown():
        while worker.alive:
            gevent.sleep(0.25)
        _shutdown_hub()

    gevent.spawn(close_websockets_on_shutdown)


def worker_int(worker):
    # SIGINT/SIGQUIT: quick shutdown; still say goodbye with 1001.
    _shutdown_hub()


def _shutdown_hub():
    from app.realtime.hub import hub

    hub.shutdown()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    path = getattr(server, "_cryptofunk_metrics_dir", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
