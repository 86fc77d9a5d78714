"""``trainkit serve``: read-only JSON over HTTP about the runs under ROOT, and a small status page.

- :mod:`trainkit.serve.runs`: what is read from ROOT (the run index over ``trainkit.status``, one
  run's status line and detail, metric pages), with every run name resolved inside ROOT;
- :mod:`trainkit.serve.cache`: the short memo that makes a burst of requests compute once;
- :mod:`trainkit.serve.api`: request -> response, without HTTP (tested in-process);
- :mod:`trainkit.serve.server`: a selectors event loop and a few workers around it (connections capped,
  slow and idle clients closed, the Host header checked);
- ``page.html``: the page (inline CSS and JS, no CDN, no build step).

Torch-free, like every reader of run folders.
"""

from trainkit.serve.api import Api, Response
from trainkit.serve.server import Server, serve_until_stopped, url

__all__ = ["Api", "Response", "Server", "serve_until_stopped", "url"]
