"""The prediction runner: featurize with Boltz's pipeline, fold, write outputs."""
