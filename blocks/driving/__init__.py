"""Driving blocks: procedural road frames and a PilotNet-style steering regressor."""

from blocks.driving.pilotnet import PilotNetRegressor
from blocks.driving.predictor import SteeringPredictor
from blocks.driving.roads import SyntheticRoads

__all__ = ["PilotNetRegressor", "SteeringPredictor", "SyntheticRoads"]
