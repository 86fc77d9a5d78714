"""``trainkit serve [ROOT...] [--host 127.0.0.1] [--port 8765]``: the runs as read-only JSON over HTTP,
and a status page for a browser."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from trainkit.commands._args import existing_folder, fmt
from trainkit.errors import UserError

EPILOG = fmt("""
examples:
  trainkit serve                          # ./experiments on http://127.0.0.1:8765/
  trainkit serve runs/ --port 0           # any free port (the URL is printed)
  trainkit serve experiments ~/hf-out     # several ROOTs: a later ROOT's name already taken gets its folder's name
  ssh -L 8765:localhost:8765 gpu-box      # then open http://localhost:8765/ on your laptop or phone

endpoints (GET or HEAD; anything else is 405):
  /                                   a page: "Epoch k/N - loss x" while a run is active, and every run
  /training/status[?run=NAME]         running, current_epoch, total_epochs, loss, name, state,
                                      progress_percentage, eta_s, heartbeat_age_s (default: the most
                                      recently active run; with no run, running false and nulls)
  /runs                               the list `trainkit status --json` prints
  /runs/NAME                          one run: status, progress, latest epoch record, report summaries
  /runs/NAME/metrics?after=N          metrics.jsonl records from byte offset N (complete lines, at most
                                      4 MB; `next` is the offset to ask for next, `more` says there is more)

Read-only, bound to the loopback by default: another --host lets anyone who reaches it read the runs.
A request must name the server in its Host header as localhost, the --host address, an IP address or
an --allow-host NAME (a web page elsewhere cannot read the runs through DNS rebinding). Connections
are capped (the one idle the longest makes room), and a client has --timeout seconds (15) to send its
request and to read the answer. Responses show paths relative to ROOT (a later ROOT's with its
folder's name in front), never absolute ones. Several ROOTs are listed as `trainkit status` lists
them; /runs/NAME takes the name /runs gives.
Results are cached for --cache-ttl seconds. Ctrl-C, SIGTERM or SIGHUP stops it (exit 0).
""")


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve the runs under ROOT (or several) as read-only JSON and a status page",
                       description="Serve the runs under ROOT (or several ROOTs) over HTTP: read-only JSON and a "
                                   "status page.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("roots", nargs="*", default=["experiments"], metavar="ROOT",
                   help="folders holding run folders (default: ./experiments); several are served together")
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="heartbeat age after which a running run is crashed (default: 3 x its interval, >= 60)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, the loopback)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    p.add_argument("--cache-ttl", type=float, default=1.0, metavar="S",
                   help="seconds a computed answer is reused by the next requests (default: 1)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this host name (e.g. the machine's name; repeatable)")
    p.add_argument("--timeout", type=float, default=15.0, metavar="S",
                   help="seconds a client has to send its request and to read the answer; an idle connection "
                        "closes after S (default: 15)")
    p.add_argument("--access-log", action="store_true", help="print one line per request on stderr")
    p.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        return serve(args)
    except KeyboardInterrupt:  # Ctrl-C while starting
        return 0


def serve(args: argparse.Namespace) -> int:
    from trainkit.serve import Api, Server, serve_until_stopped, url

    roots = [str(existing_folder(r)) for r in args.roots]
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0..65535 (0 picks a free port)")
    if args.cache_ttl < 0:
        raise UserError("--cache-ttl must be >= 0")
    if not args.timeout > 0:
        raise UserError("--timeout must be > 0")
    api = Api(roots, stale_s=args.stale_after, ttl=args.cache_ttl)
    try:
        server = Server((args.host, args.port), api, access_log=args.access_log, allow_hosts=args.allow_host,
                        timeout=args.timeout)
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}"
                        + (" (--port 0 picks a free one)" if e.errno == 98 else "")) from None
    if not is_loopback(args.host):
        print(f"trainkit serve: warning: listening on {args.host}, not the loopback: anyone who can reach this "
              "address can read the runs (prefer the loopback and an SSH tunnel)", file=sys.stderr, flush=True)
    serve_until_stopped(server, lambda: print(f"serving {', '.join(roots)} on {url(server)}", flush=True))
    print("trainkit serve: stopped", file=sys.stderr, flush=True)
    return 0
