"""The local stack and the `pipeline` CLI: the composition root, the only package that imports services."""
