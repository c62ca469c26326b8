"""The stance of dl's fork server (dlcli.system.fork_server), taken as it imports this module, the
first of its preload list, before the long imports. Nothing else imports it: importing it is the
stance.

- The server dies with the process that started it, however that ends (SIGKILL included), and each
  worker dies with the server (dlcli.run.launch.worker): nothing of a run outlives its launcher.
- It ignores SIGTERM and SIGHUP, as it ignores SIGINT: a stop sent to the launching process's
  group (a terminal's Ctrl-C, a supervisor's SIGTERM) is the launching process's to pass on to the
  workers. Ended by it, the server would take with it the exit status of every worker (each would
  read as failed, code 255). A process it forks starts with them as a fresh interpreter has them;
  a worker then takes its launcher's (dlcli.system.interrupts.stop_signals_as_launched).
"""

import os

from dlcli.system.collector import collect_less_often
from dlcli.system.interrupts import fork_server_stance
from dlcli.system.processes import die_with_parent

die_with_parent(os.getppid())
fork_server_stance()
collect_less_often()  # as `dl` does (dlcli.system.collector), for the server's imports and every worker it forks
