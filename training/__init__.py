"""Training: building the dataset through Feast, training, evaluating, registering, lifecycle commands."""
