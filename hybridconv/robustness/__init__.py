"""Robustness of trained runs: corruptions, adversarial attacks, ``hybridconv evaluate``."""
