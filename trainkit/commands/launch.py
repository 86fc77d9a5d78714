"""``trainkit launch [ROOT]``: start pending runs and relaunch failed or crashed ones (as resumes)."""

from __future__ import annotations

import argparse
import sys

import orjson

from trainkit.commands._args import add_root_arguments, existing_folder, fmt
from trainkit.errors import UserError

EPILOG = fmt("""
examples:
  trainkit launch --dry-run                 # what would start, the exact command and folder; changes nothing
  trainkit launch --dry-run --json          # [{"name", "action", "reason", "argv", "cwd"} or "skip": why]
  trainkit launch runs/ --max-parallel 2    # start up to 2 at once (running runs count)
  trainkit launch --wait                    # stay to start queued runs as others finish
  trainkit launch --slurm --partition gpu --time 4:00:00 --gpus 1    # one Slurm job per run
  trainkit launch --slurm --dry-run         # print the job scripts; submit nothing
  trainkit launch --slurm --sbatch-arg=--account=proj --sbatch-arg=--mem=16G

Launched: pending runs; relaunched (resumed through 'trainkit train RUN'): failed and crashed runs.
Never: finished, early_stopped, running, paused or stopped runs (a user's stop is respected).
Runs are detached (they survive the launcher and the SSH session) and append their output to
console.log. A run that crashed --max-crashes times in a row without progress is marked failed.

Shared folders (sshd's StrictModes rule): a run starts only when its folder, its config file and
resolved_config.json are yours and writable by nobody else (your private group may); any other run
is skipped with the reason. A run of another trainer (the HF or Lightning callbacks) is restarted
with the command it recorded in its folder only with --run-recorded-commands.

With --slurm each run becomes one job running 'python -m trainkit train RUN' (submitted with
--requeue, --signal=B:USR1@90, output appended to console.log); near its time limit or when preempted
it checkpoints and requeues itself, and resumes the same run folder. The job id is recorded in
launch.json; a run whose job is pending or running is never submitted again (one squeue call per
launch). --max-parallel does not apply: Slurm schedules the jobs.
""")


def register(sub) -> None:
    p = sub.add_parser("launch", help="start pending runs, relaunch failed and crashed ones",
                       description="Start pending runs and relaunch failed or crashed ones (as resumes).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    add_root_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--json", action="store_true", help="print the plan (or what was started) as JSON")
    p.add_argument("--max-parallel", type=int, default=1, metavar="N",
                   help="at most N runs at once under ROOT, running ones included (default: 1); with N > 1 "
                        "each run gets cores/N torch threads (OMP_NUM_THREADS, unless set)")
    p.add_argument("--wait", action="store_true", help="keep running to start queued runs as others finish")
    p.add_argument("--max-crashes", type=int, default=3, metavar="N",
                   help="mark a run failed after N crashes in a row without progress (default: 3)")
    p.add_argument("--run-recorded-commands", action="store_true",
                   help="also restart runs of other trainers with the command they recorded in their run folder")
    p.add_argument("--torchrun", metavar="OPTIONS",
                   help='start each run under torchrun with these options, e.g. "--nproc_per_node 2" '
                        "(default: a run trained under torchrun before is relaunched the same way)")
    s = p.add_argument_group("Slurm")
    s.add_argument("--slurm", action="store_true", help="submit each run as a Slurm job (sbatch) instead")
    s.add_argument("--partition", metavar="P", help="Slurm partition (sbatch --partition)")
    s.add_argument("--time", metavar="T", help="time limit per job, e.g. 4:00:00 (sbatch --time)")
    s.add_argument("--gpus", metavar="G", help="GPUs per job, e.g. 1 or a100:2 (sbatch --gpus)")
    s.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="one more sbatch option, e.g. --sbatch-arg=--account=proj (repeatable)")
    p.set_defaults(func=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    from trainkit.launcher import Launcher, plan
    from trainkit.runfolder.lock import LockHeld

    root = existing_folder(args.root)
    if args.max_parallel < 1:
        raise UserError("--max-parallel must be >= 1")
    if args.max_crashes < 1:
        raise UserError("--max-crashes must be >= 1")
    if args.dry_run and args.wait:
        raise UserError("--dry-run changes nothing; it does not combine with --wait")
    slurm_only = [f"--{n.replace('_', '-')}" for n in ("partition", "time", "gpus", "sbatch_arg") if getattr(args, n)]
    if slurm_only and not args.slurm:
        raise UserError(f"{slurm_only[0]} is a Slurm option: add --slurm")
    if args.slurm and args.wait:
        raise UserError("--slurm hands the runs to Slurm's queue; it does not combine with --wait")
    for a in args.sbatch_arg:
        if not a.startswith("-"):
            raise UserError(f"--sbatch-arg {a!r}: expected an sbatch option such as --account=proj")
    from trainkit.status import scan

    runs = scan(root, stale_s=args.stale_after, foreign=False)  # one squeue call for Slurm; no foreign runs
    actions = plan(root, max_crashes=args.max_crashes, stale_s=args.stale_after, runs=runs)
    if args.slurm:
        return launch_slurm(args, root, actions, runs)
    torchrun = torchrun_options(args.torchrun)
    if args.dry_run:
        return dry_run(args, root, actions, torchrun)
    report = (lambda line: print(line, file=sys.stderr)) if args.json else print
    launcher = Launcher(root, max_parallel=args.max_parallel, max_crashes=args.max_crashes,
                        stale_s=args.stale_after, report=report, torchrun=torchrun,
                        recorded=args.run_recorded_commands)
    if not actions:
        report(f"nothing to launch under {root}")
    try:
        started = launcher.run(actions, wait=args.wait)
    except KeyboardInterrupt:
        report("launcher interrupted; the runs it started go on (they are detached)")
        return 130
    except LockHeld as e:  # ROOT's launch lock: another launcher counts and starts right now
        raise UserError(f"{root}: {e}") from None
    if args.json:
        sys.stdout.buffer.write(orjson.dumps([a.to_json() for a in started], option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def dry_run(args: argparse.Namespace, root, actions, torchrun: str | None) -> int:
    """What would start: for each run the exact argv and working folder, or why it would be skipped."""
    import os
    import shlex

    from trainkit.launcher import relaunch_command

    out = []
    for a in actions:
        if a.action == "give_up":
            if not args.json:
                print(f"would give up on {a.name}: {a.reason}")
            continue
        entry = a.to_json()
        command = relaunch_command(a.path, sys.executable, torchrun, recorded=args.run_recorded_commands)
        if isinstance(command, str):
            entry["skip"] = command
        else:
            entry["argv"], entry["cwd"] = command[0], command[1] or os.getcwd()
        out.append(entry)
        if not args.json:
            if "skip" in entry:
                print(f"would skip {a.name} ({a.action}: {a.reason}): {entry['skip']}")
            else:
                print(f"would {a.action} {a.name}: {a.reason}\n  argv: {shlex.join(entry['argv'])}\n"
                      f"  cwd:  {entry['cwd']}")
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    elif not actions:
        print(f"nothing to launch under {root}")
    return 0


def torchrun_options(text: str | None) -> str | None:
    """``--torchrun`` checked: torchrun's own options (``--nproc_per_node 2``), never a command."""
    if text is None:
        return None
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UserError(f"--torchrun {text!r}: {e}") from None
    if not words or not all(w.startswith("-") or words[i - 1].startswith("-") for i, w in enumerate(words)):
        raise UserError(f"--torchrun {text!r}: expected torchrun's options, e.g. \"--nproc_per_node 2\"")
    if "--standalone" not in words and not any(w.startswith("--rdzv") or w.startswith("--nnodes") for w in words):
        words.insert(0, "--standalone")  # one node unless a rendezvous is given
    return shlex.join(words)


def slurm_script(launcher, action) -> str:
    """The job script of ``action``, or ``skip: why`` (a run that is not the user's own, a name
    that cannot go into a script)."""
    from trainkit import slurm
    from trainkit.trust import HINT, untrusted

    why = untrusted(action.path)
    if why is not None:
        return f"skip: {why}; {HINT}"
    try:
        return launcher.script(action)
    except slurm.SlurmError as e:
        return f"skip: {e}"


def launch_slurm(args: argparse.Namespace, root, actions, runs) -> int:
    from trainkit import slurm
    from trainkit.launcher import SlurmLauncher, record_nodes

    options = slurm.Options(partition=args.partition, time=args.time, gpus=args.gpus, sbatch_args=args.sbatch_arg)
    report = (lambda line: print(line, file=sys.stderr)) if args.json else print
    launcher = SlurmLauncher(root, options, max_crashes=args.max_crashes, stale_s=args.stale_after, report=report,
                             torchrun=torchrun_options(args.torchrun))
    todo = [a for a in actions if a.action in ("launch", "relaunch")]
    if args.dry_run:
        scripts = {a.name: slurm_script(launcher, a) for a in todo}
        if args.json:
            out = [{**a.to_json(), **({"skip": scripts[a.name]} if scripts[a.name].startswith("skip: ")
                                      else {"script": scripts[a.name]})} for a in todo]
            sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
            return 0
        if not actions:
            print(f"nothing to launch under {root}")
        for a in actions:
            if a.action == "give_up":
                print(f"would give up on {a.name}: {a.reason}")
            elif scripts[a.name].startswith("skip: "):
                print(f"# would skip {a.name} ({a.action}: {a.reason}): {scripts[a.name][6:]}")
            else:
                print(f"# would submit {a.name} ({a.action}: {a.reason})")
                print(scripts[a.name])
        return 0
    if todo and not slurm.available("sbatch"):
        raise UserError("sbatch not found: --slurm needs Slurm's client commands on PATH")
    record_nodes(runs)
    if not actions:
        report(f"nothing to launch under {root}")
    try:
        started = launcher.run(actions)
    except slurm.SlurmError as e:
        raise UserError(str(e)) from None
    if args.json:
        sys.stdout.buffer.write(orjson.dumps([a.to_json() for a in started], option=orjson.OPT_INDENT_2) + b"\n")
    return 0
