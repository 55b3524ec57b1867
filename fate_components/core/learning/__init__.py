"""The 3D ResNet, local training and prediction, and model signatures."""
