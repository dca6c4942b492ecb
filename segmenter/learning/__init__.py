"""The model: windows over a series, the network, training, a trained model with its
per-row probabilities, inference over tasks, regions and evaluation."""
