"""Training data, training script and evaluation report of the triage heads."""
