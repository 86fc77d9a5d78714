"""``trainmon [ROOT...] [--poll [S]] [--readonly] [--archived] [--once]``."""

from __future__ import annotations

import argparse
import os
import sys
import time

EPILOG = """\
examples:
  trainmon                          # the runs under ./experiments
  trainmon runs/ --readonly         # look, never write (no action keys)
  trainmon /mnt/nfs/exp --poll 2    # a shared filesystem: stat the files every 2 s
  trainmon --once | grep crashed    # plain text table, then exit (also when piped)
  trainmon experiments ~/hf-out     # several ROOTs: a later ROOT's name already taken gets its folder's name

Runs other tools wrote show too, read-only: Hugging Face Trainer output folders, Lightning
lightning_logs/version_N and TensorBoard event folders (stop, pause, relaunch and promote are off
for them; archive moves a folder directly under ROOT). With several ROOTs, archive, restore,
promote and relaunch act on each run under its own ROOT (a ROOT's runs go to its own
ROOT-archive/, and come back from it).

Watching: trainmon watches ROOT with inotify (a change shows within a fraction of a second).
inotify sees nothing written by another host, so on nfs, cifs/smb, sshfs/fuse, ceph, lustre and
other network filesystems trainmon polls by itself (the header says so); --poll forces polling
(every S seconds, default 1) anywhere. Polling stats only the files trainmon knows.

Keys: ? shows every key; q or Ctrl-C quits. Exit code 0; 2 on bad input.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"trainmon: {message}\n")
        sys.exit(2)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="trainmon", description="Watch every trainkit run under ROOT: progress, loss, charts, "
                                            "evaluations; archive, promote, stop, pause or relaunch from the keyboard.",
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("roots", nargs="*", default=["experiments"], metavar="ROOT",
                   help="the folder of run folders (default ./experiments); several are watched together")
    p.add_argument("--poll", nargs="?", const=1.0, type=float, default=None, metavar="S",
                   help="poll every S seconds instead of inotify (default 1 s)")
    p.add_argument("--readonly", action="store_true", help="no actions: no key writes anything")
    p.add_argument("--archived", action="store_true", help="also show the runs in each ROOT-archive/ (dim, "
                                                           "marked archived; --once: a second table)")
    p.add_argument("--once", action="store_true", help="print the runs table as plain text and exit "
                                                       "(also when stdout is not a terminal)")
    return p.parse_args(argv)


def print_once(root: str | list[str], archived: bool = False) -> None:
    """The runs table as text (several ROOTs: one table, names kept unique); with ``archived``, the
    runs of every ROOT's archive after it, in one table under their own title (names kept unique
    as the ROOTs' are)."""
    from trainkit.roots import distinct, scan_roots
    from trainkit.runfolder import ARCHIVE_SUFFIX
    from trainkit.status_table import render

    roots = [root] if isinstance(root, str) else root
    print(render(scan_roots(roots), ", ".join(roots)))
    if archived:
        archives = [os.path.abspath(r).rstrip("/") + ARCHIVE_SUFFIX for r in distinct(roots)]
        where = ", ".join(archives)
        runs = scan_roots([a for a in archives if os.path.isdir(a)])
        print(f"\narchived ({where}):")
        print(render(runs, where) if runs else f"no archived runs in {where}")


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse(argv)
    if args.poll is not None and not (args.poll > 0):
        sys.stderr.write("trainmon: --poll must be > 0 seconds\n")
        return 2
    for root in args.roots:
        if not os.path.isdir(root):
            what = "is not a folder" if os.path.exists(root) else "no such folder"
            sys.stderr.write(f"trainmon: {root}: {what}\n")
            return 2
    if args.once or not sys.stdout.isatty():
        try:
            print_once(args.roots, archived=args.archived)
            sys.stdout.flush()
        except BrokenPipeError:  # `trainmon --once | head -1`: the reader left; not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    from tui.app import Options, TrainmonApp

    app = TrainmonApp(Options(args.roots[0], extra_roots=tuple(args.roots[1:]), poll_s=args.poll,
                              readonly=args.readonly, archived=args.archived))
    app.started_at = t0
    try:
        app.run()
    except KeyboardInterrupt:  # a SIGINT before the app could take it over: quit quietly
        return 130
    return 130 if app.return_code == 130 else 0  # 130: ended by a SIGINT (the app quits as q does)


if __name__ == "__main__":
    sys.exit(main())
