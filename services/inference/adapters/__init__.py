"""Inference adapters: the MiniLM model and its device, the predictor around the backends, the Redis result store."""
