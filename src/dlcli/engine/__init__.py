"""The one shared PyTorch engine behind train, eval, sweep and lr-find."""
