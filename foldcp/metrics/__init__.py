"""Metrics computed from predictions: confidence scores and interface contacts."""
