import functools
import io
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import torch
from browser import SITE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


# Tests measure afresh unless they test the result cache itself (they name their own folder).
os.environ["ZOO_CACHE"] = "off"


# ---- the built site, shared by every test module that opens it (built once per session) --------

@pytest.fixture(scope="session")
def everything():
    """The site built from the committed data/ into build/ and public/; every row of counts.csv."""
    from zoo.report import build as site

    SITE.mkdir(parents=True, exist_ok=True)
    site.build(ROOT / "data", SITE, log=io.StringIO())
    return pd.read_csv(ROOT / "data" / "counts.csv")


@pytest.fixture(scope="session")
def built(everything):
    """The default zoo's rows: what every page but the explorer shows."""
    from zoo.catalogue.entries import default_zoo
    from zoo.store.schema import KEY

    keys = {e.key for e in default_zoo()}
    mine = [k in keys for k in everything[KEY].itertuples(index=False, name=None)]
    return everything[mine].reset_index(drop=True)


@pytest.fixture(scope="session")
def server(built):
    """The built site (public/) served on 127.0.0.1; its base URL."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            import sys

            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)  # a page closed mid-load: not news

    httpd = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(SITE / "public")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser():
    from browser import chromium_path
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield b
        b.close()
