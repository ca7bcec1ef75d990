"""Developer tools beside the pipeline: the GPU check, the model's speed alone, the triage heads' training."""
