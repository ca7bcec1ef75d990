"""inference: Runs the model over batches grouped by partition and publishes results transactionally."""
