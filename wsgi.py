"""WSGI entry point for gunicorn: ``gunicorn -c config/gunicorn.conf.py wsgi:app``."""

import gc

from gevent import monkey

if monkey.is_module_patched("socket"):
    # Under the gevent worker psycopg2 must yield to the hub while it waits on PostgreSQL,
    # or one slow query blocks every request of the process.
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()

from app import create_app  # must follow the patch above
from app.access.startup import prepare_access
from app.realtime.hub import hub

app = create_app()
# Started straight from the Procfile (gunicorn wsgi:app): the bootstrap key exists here too.
prepare_access(app.extensions["cryptofunk"]["settings"])

if monkey.is_module_patched("socket"):
    # Listen before the first client arrives, so no event of this process's lifetime is missed.
    hub.ensure_started(app.extensions["cryptofunk"]["settings"])

# Everything built so far (modules, the app, schemas, compiled statements) lives as long as
# the process: keep it out of the collector's generations, so a collection walks only what
# requests and WebSocket clients create.
gc.freeze()
