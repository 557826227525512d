"""The SCimilarity-style metric-learning encoder: data, module, losses, training, facade."""
