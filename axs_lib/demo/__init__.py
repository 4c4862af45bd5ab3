"""A try-it path with no published weights: tiny random-weight checkpoints and a synthetic scene."""
