"""What each layer of a request costs, in CPU instructions: the real app against the bare one.

Throughput on a shared 2-core machine moves by ±0.06 from run to run (bench/http_routes.py);
an instruction count does not. This runs the WSGI callables in-process (no HTTP server), the
way a gunicorn gevent worker would call them, under callgrind, and counts the instructions of
N requests per configuration:

- **bare**: ``bench/bare_http.py``, the same SQL and JSON without the project's layers;
- **real**: the project with auth on (an API key, cached as a listening worker caches it);
- then the real app with one layer after another replaced or removed: the view (swapped for
  the bare view, so the pool, statements, dumping and response wrapper go), the response
  headers middleware, the screening hook (access control), the finishing hook (CORS, metrics,
  audit) and the teardown (the pool check-in).

Each step's difference is what that layer costs per request. The counts include psycopg2 and
the gevent hub (both apps pay those), not PostgreSQL, which runs in its own process.

    python bench/request_cost.py                     # order detail, 300 requests each
    python bench/request_cost.py --route create_order --requests 200

Needs valgrind (Debian: apt install valgrind); about a minute per route.
"""

from __future__ import annotations

import argparse
import gc
import glob
import io
import os
import re
import subprocess
import sys
import tempfile

LAYERS = ("view", "headers", "screen", "finish", "teardown")
ROUTES = ("order_detail", "decision_detail", "status", "order_list", "create_order")


def environ(path: str, key: str | None, method: str = "GET", body: bytes = b"") -> dict:
    """A WSGI environ as gunicorn builds it for a keep-alive request from wrk."""
    path_info, _, query = path.partition("?")
    env = {
        "REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8080", "HTTP_USER_AGENT": "wrk",
        "HTTP_ACCEPT": "*/*",
    }  # fmt: skip
    if key:
        env["HTTP_X_API_KEY"] = key
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def call(app, env: dict) -> str:
    """Run one request through a WSGI callable; its status line."""
    statuses = []
    b"".join(app(env, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0]


def _read_uuids_as_text_on_bare_connections(bare_http) -> None:
    """peewee registers psycopg2's UUID type process-wide, so in this process the bare app
    would turn every UUID into a ``uuid.UUID``; in its own gunicorn process (bench/http_routes)
    it reads them as text. Its connections get a per-connection text caster, as there."""
    from psycopg2 import extensions

    as_text = extensions.new_type((2950,), "UUID_AS_TEXT", lambda value, cursor: value)
    open_connection = bare_http.pool.open

    def open_reading_uuids_as_text():
        connection = open_connection()
        extensions.register_type(as_text, connection)
        return connection

    bare_http.pool.open = open_reading_uuids_as_text


def measure(route: str, requests: int) -> None:
    """Under callgrind: build the configurations and dump the counts of each one's requests."""
    from gevent import monkey

    monkey.patch_all()
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
    import http_routes
    from common import bench_database

    from app.db import db

    def callgrind(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(os.getpid())], capture_output=True)

    with bench_database() as url:
        seeded = http_routes.seed()
        db.close_all()
        os.environ.update(DATABASE_URL=url, RATE_LIMIT_ENABLED="false", LOG_LEVEL="warning",
                          ORDER_BACKLOG_SECONDS="1000000000", BARE_VERSION="bench")  # fmt: skip
        import bare_http

        _read_uuids_as_text_on_bare_connections(bare_http)

        from app import create_app
        from app.access.authenticate import key_cache
        from app.access.startup import prepare_access

        method, body = "GET", b""
        if route == "create_order":
            path, method, body = "/api/v1/orders", "POST", http_routes.ORDER_BODY.encode()
        else:
            path = http_routes.routes(seeded)[route]
        bare_endpoint = bare_http.app.url_map.bind("x").match(path, method=method)[0]
        bare_view = bare_http.app.view_functions[bare_endpoint]

        def real_without(stripped: set[str]):
            app = create_app()
            prepare_access(app.extensions["cryptofunk"]["settings"])
            endpoint = app.url_map.bind("x").match(path, method=method)[0]
            if "view" in stripped:
                declared = app.view_functions[endpoint]

                def view(**path_args):
                    return bare_view(*(str(value) for value in path_args.values()))

                view.__dict__.update(declared.__dict__)  # keeps its access declaration
                app.view_functions[endpoint] = view
            hooks = app.before_request_funcs[None][0].__self__
            if "screen" in stripped:
                app.before_request_funcs[None].remove(hooks.screen)
            if "finish" in stripped:
                app.after_request_funcs[None].remove(hooks.finish)
            if "teardown" in stripped:
                app.teardown_request_funcs[None].remove(hooks.teardown)
            return app.wsgi_app.wsgi_app if "headers" in stripped else app.wsgi_app

        configurations = {"bare": (bare_http.app.wsgi_app, None, path)}
        if route == "create_order":
            configurations["bare, audited"] = (bare_http.app.wsgi_app, None, path + "?audited=1")
        configurations["real"] = (real_without(set()), seeded["key"], path)
        for count in range(1, len(LAYERS) + 1):
            stripped = LAYERS[:count]
            configurations["real without " + ", ".join(stripped)] = (
                real_without(set(stripped)),
                seeded["key"],
                path,
            )
        key_cache.trust(True)  # as a worker whose listener hears revocations
        gc.freeze()  # as wsgi.py does after start-up
        for number, (name, (app, key, target)) in enumerate(configurations.items()):
            for _ in range(50):  # warm: caches, compiled statements, pool
                call(app, environ(target, key, method, body))
            environs = [environ(target, key, method, body) for _ in range(requests)]
            callgrind("-z")
            callgrind("-i", "on")
            for env in environs:
                status = call(app, env)
            callgrind("-i", "off")
            callgrind(f"--dump={number}:{name.replace(' ', '_')}")
            if not status.startswith("20"):
                raise SystemExit(f"{name}: {path} answered {status}")


def report(directory: str, requests: int) -> None:
    """The instructions per request of each dump, and each step's difference."""
    rows = []
    for dump in glob.glob(os.path.join(directory, "callgrind.*.*")):
        with open(dump) as handle:
            text = handle.read()
        label = re.search(r"^desc: Trigger: .*dump (\d+):(\S+)$", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if label and total:
            rows.append(
                (int(label.group(1)), label.group(2).replace("_", " "), int(total.group(1)))
            )
    rows.sort()
    if not rows:
        raise SystemExit("callgrind wrote no counts (is valgrind installed?)")
    bare = rows[0][2]
    print("| configuration | instructions per request | step | ÷ bare |")
    print("| --- | ---: | ---: | ---: |")
    previous = None
    for _, name, total in rows:
        per_request = total / requests / 1000
        step = "" if previous is None else f"{per_request - previous:+,.0f} k"
        print(f"| {name} | {per_request:,.0f} k | {step} | {total / bare:.2f} |")
        previous = per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=ROUTES, default="order_detail")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child, under callgrind
        measure(args.route, args.requests)
        return
    with tempfile.TemporaryDirectory(prefix="cf-callgrind-") as directory:
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={directory}/callgrind.%p",
            sys.executable, __file__, "--measure", "--route", args.route,
            "--requests", str(args.requests),
        ]  # fmt: skip
        try:
            run = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError:
            raise SystemExit("valgrind is not installed (Debian: apt install valgrind)") from None
        if run.returncode != 0:
            raise SystemExit(run.stdout[-3000:] + run.stderr[-3000:])
        print(f"{args.route}: {args.requests} requests per configuration\n")
        report(directory, args.requests)


if __name__ == "__main__":
    main()
