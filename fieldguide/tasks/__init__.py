"""Task contracts: what a batch is, which head a model needs, the loss and the metrics."""
