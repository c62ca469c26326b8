"""Training a run: which kind a config asks for (dispatch), one run (single), resuming it, k-fold
cross-validation, refitting on train+val, and N processes with DistributedDataParallel (launch)."""
