"""The last module dl's fork server (dlcli.system.fork_server) imports: everything imported before it
is moved out of the garbage collector's reach (gc.freeze), as Python's documentation advises for a
server that forks workers. A forked worker shares the server's memory until it writes to a page;
its collections would otherwise walk every object the imports made, writing to each (reference
counts, the collector's own fields), and so copy the server's whole heap into every worker.
Nothing else imports it: importing it is the freeze."""

import gc

gc.freeze()
