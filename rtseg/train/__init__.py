"""Training: datasets, joint augmentation, losses, metrics and the loop behind ``rtseg train``."""
