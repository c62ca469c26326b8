"""dl's own configs: the YAML groups `dl` composes (config.yaml, data/, model/, optim/, sched/, loss/,
logger/, split/, trainer/, experiment/). They live at the top of the repository and are installed
as the package `dlcli.conf`, so `dl` finds them from any directory."""
