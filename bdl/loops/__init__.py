"""Training and inference loops the stage scripts call."""
