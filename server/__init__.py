"""The control plane: registry, training, signing, rollouts, drift, API and CLI."""
