"""Analysis tools: the Claim 1 synchronization cost model, step-time fits, plots."""
