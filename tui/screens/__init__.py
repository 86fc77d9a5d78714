"""trainmon's screens: the runs workspace, run detail, compare, inspector, help, confirmation."""
